#!/usr/bin/env bash
# Builds the Fjord container images from images/*.Containerfile, tagged
# <registry>/<name>:<version> with the workspace version (the chart's appVersion):
#   fjord-broker, fjord-operator, and fjord (the CLI) once a workspace package has a `fjord` binary.
#
#   scripts/images.sh [options] [broker] [operator] [cli]      (default: every image that exists)
#
#   --engine docker|buildah  docker if its daemon answers, else buildah (Debian's package; runs
#                            daemonless as root with --isolation chroot)
#   --registry REG           image name prefix [ghcr.io/fjord-streaming, or $FJORD_IMAGE_REGISTRY]
#   --tag TAG                [the workspace version from Cargo.toml]
#   --prebuilt DIR           copy the binaries from DIR (e.g. target/release, or target/debug in CI)
#                            instead of compiling them inside the image; debug info is stripped
#   --base IMAGE             runtime base image [gcr.io/distroless/cc-debian12:nonroot]
#   --local-base             build the runtime base offline from Debian packages (libc6, libgcc-s1,
#                            ca-certificates, netbase: apt-get download + dpkg-deb -x, no shell, no
#                            package manager) as localhost/fjord-base:bookworm and use it; for
#                            machines that reach Debian's mirror but no container registry (CI);
#                            needs a Debian-family host (apt-get, dpkg-deb)
#   --rust-image IMAGE       build stage image [docker.io/library/rust:1.95-bookworm]
#
# Examples:
#   scripts/images.sh                                          # compile in the images (needs a registry)
#   cargo build --release -p fjord-broker -p fjord-operator && scripts/images.sh --prebuilt target/release
#   scripts/images.sh --local-base --prebuilt target/debug broker operator   # what CI does
# Prints one line per image: `built NAME size=SIZE seconds=S` (SIZE as the engine reports it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

engine="" registry="${FJORD_IMAGE_REGISTRY:-ghcr.io/fjord-streaming}" tag="" prebuilt="" local_base=0
base="gcr.io/distroless/cc-debian12:nonroot" rust_image="docker.io/library/rust:1.95-bookworm"
want=()
while (($#)); do
    case "$1" in
        --engine) engine="$2"; shift 2 ;;
        --registry) registry="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        --prebuilt) prebuilt="$(cd "$2" && pwd)"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --local-base) local_base=1; shift ;;
        --rust-image) rust_image="$2"; shift 2 ;;
        broker|operator|cli) want+=("$1"); shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "$engine" ]]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker
    elif command -v buildah >/dev/null 2>&1; then engine=buildah
    else echo "images.sh: neither a docker daemon nor buildah (apt-get install buildah) is available" >&2; exit 1
    fi
fi
case "$engine" in
    docker) build() { docker build "$@"; }; size_of() { docker image inspect -f '{{.Size}}' "$1"; } ;;
    # chroot isolation needs no OCI runtime; where overlay mounts fail, set the storage driver to
    # vfs in /etc/containers/storage.conf. The stage images left behind are pruned.
    buildah)
        export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
        build() { buildah bud "$@" && { buildah rmi --prune >/dev/null 2>&1 || true; }; }
        size_of() { buildah images --noheading --format '{{.Size}}' "$1"; } ;;
    *) echo "images.sh: --engine must be docker or buildah" >&2; exit 2 ;;
esac

metadata="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null || cargo metadata --no-deps --format-version 1)"
# package name of a binary target, empty if none
package_of() { python3 -c '
import json, sys
m = json.load(sys.stdin)
print(next((p["name"] for p in m["packages"] for t in p["targets"] if "bin" in t["kind"] and t["name"] == sys.argv[1]), ""))' "$1" <<<"$metadata"; }
version="$(python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "fjord-broker"))' <<<"$metadata")"
tag="${tag:-$version}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

# image -> binary; the CLI only once it exists (issue 16).
declare -A binary=([broker]=fjord-broker [operator]=fjord-operator [cli]=fjord)
cli_package="$(package_of fjord)"
if ((${#want[@]} == 0)); then
    want=(broker operator)
    if [[ -n "$cli_package" ]]; then want+=(cli); else echo "images.sh: no \`fjord\` CLI binary in the workspace yet: skipping the cli image"; fi
fi

work="$ROOT/target/images"
mkdir -p "$work"

# The runtime base made offline from Debian packages: what distroless/cc holds (glibc, libgcc,
# CA certificates, /etc/services, a passwd with root and nonroot=65532), no shell, no apt.
build_local_base() {
    local dir="$work/base" debs="$work/debs" pkgs=(libc6 libgcc-s1 ca-certificates netbase)
    rm -rf "$dir" && mkdir -p "$dir/rootfs" "$debs"
    (cd "$debs" && { apt-get download -q "${pkgs[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download -q "${pkgs[@]}" >/dev/null; }; })
    local fs="$dir/rootfs" versions=()
    for p in "${pkgs[@]}"; do
        local deb
        deb="$(ls -t "$debs/${p}"_*.deb | head -n1)"
        dpkg-deb -x "$deb" "$fs"
        versions+=("$p=$(dpkg-deb -f "$deb" Version)")
    done
    rm -rf "$fs"/usr/share/{doc,man,info,lintian,locale} "$fs"/usr/sbin "$fs"/etc/ca-certificates* "$fs"/usr/lib/x86_64-linux-gnu/gconv
    mkdir -p "$fs/etc/ssl/certs" "$fs/tmp" "$fs/home/nonroot" "$fs/root"
    cat "$fs"/usr/share/ca-certificates/mozilla/*.crt >"$fs/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$fs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$fs/etc/group"
    printf 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' >"$fs/etc/nsswitch.conf"
    chmod 1777 "$fs/tmp" && chmod 700 "$fs/root" && chown 65532:65532 "$fs/home/nonroot"
    build -f "$ROOT/images/base.Containerfile" --build-arg "PACKAGES=${versions[*]}" \
        -t localhost/fjord-base:bookworm "$fs" >"$work/base.log" 2>&1 || { cat "$work/base.log"; exit 1; }
    echo "built localhost/fjord-base:bookworm (${versions[*]})"
}
if ((local_base)); then
    build_local_base
    base=localhost/fjord-base:bookworm
fi

for image in "${want[@]}"; do
    bin="${binary[$image]}"
    package="$(package_of "$bin")"
    [[ -n "$package" ]] || { echo "images.sh: no workspace package has a \`$bin\` binary (the $image image needs it)" >&2; exit 1; }
    name="$registry/$bin:$tag"
    args=(-f "$ROOT/images/$image.Containerfile" -t "$name" --build-arg "BASE_IMAGE=$base"
          --build-arg "RUST_IMAGE=$rust_image" --build-arg "VERSION=$tag" --build-arg "REVISION=$revision"
          --build-arg "PACKAGE=$package")
    start=$SECONDS
    if [[ -n "$prebuilt" ]]; then
        # A context holding only the binary (debug info stripped, symbols kept for backtraces).
        [[ -x "$prebuilt/$bin" ]] || { echo "images.sh: $prebuilt/$bin does not exist (build it first)" >&2; exit 1; }
        ctx="$work/context-$image"
        rm -rf "$ctx" && mkdir -p "$ctx"
        objcopy --strip-debug "$prebuilt/$bin" "$ctx/$bin"
        mkdir "$ctx/data"  # the broker's (empty) data directory; unused by the other images
        build "${args[@]}" --build-arg BINARY_FROM=prebuilt "$ctx"
    else
        build "${args[@]}" "$ROOT"
    fi >"$work/$image.log" 2>&1 || { cat "$work/$image.log"; echo "images.sh: building $name failed" >&2; exit 1; }
    echo "built $name size=$(size_of "$name") seconds=$((SECONDS - start))"
done
