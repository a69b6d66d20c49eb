#!/usr/bin/env bash
# Installs the console test's Node modules (playwright-core, axe-core, at the
# versions package-lock.json pins) outside the clone, in
# ${SLUICE_CONSOLE_NODE:-~/.cache/sluice/console-node}, and installs them
# again only when the lock file changes (its hash is kept beside them).
# Chromium is Debian's (`apt-get install chromium`), never a download:
# walk.mjs launches /usr/bin/chromium. Prints the node_modules directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${SLUICE_CONSOLE_NODE:-$HOME/.cache/sluice/console-node}"
wanted="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$prefix/lock.sha256" 2>/dev/null)" != "$wanted" ] || [ ! -d "$prefix/node_modules" ]; then
    rm -rf "$prefix"
    mkdir -p "$prefix"
    cp "$here/package.json" "$here/package-lock.json" "$prefix/"
    # No install scripts: playwright-core would fetch no browser anyway, and
    # nothing else here needs one.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$prefix" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    echo "$wanted" >"$prefix/lock.sha256"
fi
echo "$prefix/node_modules"
