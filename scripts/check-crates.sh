#!/usr/bin/env bash
# The crates follow the planes, and Cargo, not review, keeps them apart
# (DESIGN.md, "Workspace"): this fails on a dependency edge the map
# forbids, read from `cargo tree` (normal dependencies, the whole tree: a
# crate reached through another counts too).
#
#   bash scripts/check-crates.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# crate: what must not be in its tree. The gateway is the data plane: no
# control plane, no database client, no command-line parser. The registry
# reaches engines only through its `Inspector` trait, and its flags are
# the binary's (sluice/src/command). `common` and
# `registry-client` sit under both planes and depend on nothing of ours;
# nor do the gRPC types (`proto`). The load generator is a black-box
# client: protocol types at most.
declare -A forbidden=(
    [sluice-gateway]="sluice sluice-registry rusqlite postgres tokio-postgres libsqlite3-sys clap"
    [sluice-registry]="sluice sluice-gateway tract-onnx ort clap"
    [sluice-common]="sluice sluice-gateway sluice-registry sluice-registry-client"
    [sluice-registry-client]="sluice sluice-gateway sluice-registry sluice-common"
    [sluice-proto]="sluice sluice-gateway sluice-registry sluice-registry-client sluice-common"
    [sluice-loadtest]="sluice sluice-gateway sluice-registry sluice-registry-client sluice-common"
)

status=0
for crate in "${!forbidden[@]}"; do
    tree=$(cargo tree --quiet -p "$crate" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
    for name in ${forbidden[$crate]}; do
        if grep -qx -- "$name" <<<"$tree"; then
            # Say through which crate it comes, so the fix is obvious.
            path=$(cargo tree --quiet -p "$crate" -e normal -i "$name" --prefix indent 2>/dev/null | head -20)
            echo "check-crates: $crate depends on $name, which the crate map forbids:" >&2
            echo "$path" >&2
            status=1
        fi
    done
done
if [ "$status" = 0 ]; then
    echo "check-crates: no forbidden edge (${!forbidden[*]})" >&2
fi
exit "$status"
