#!/usr/bin/env bash
# Build a local Debian base image for the lab with debootstrap + podman import.
#
#   lab/build-image.sh debian12     # bookworm
#   lab/build-image.sh debian13     # trixie
#
# There is no container registry here: images are built from Debian's
# packages and imported. An image is reused when it exists and carries the
# label of the current recipe; it is rebuilt only when the recipe changes
# (or with FORCE=1).
set -euo pipefail

name="${1:?usage: build-image.sh debian12|debian13}"
case "$name" in
  debian12) suite=bookworm ;;
  debian13) suite=trixie ;;
  *) echo "build-image.sh: unknown image '$name' (use debian12 or debian13)" >&2; exit 2 ;;
esac

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
include="python3,systemd,systemd-sysv,sudo,iproute2,ca-certificates"
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

# The recipe: everything that changes the image's content.
recipe="variant=minbase suite=$suite include=$include script=$(sha256sum "$0" | cut -c1-16)"
recipe_id="$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
image="localhost/cu-$name:latest"

if [ "${FORCE:-0}" != 1 ] && podman image exists "$image"; then
  have="$(podman image inspect "$image" --format '{{ index .Labels "org.clinical-upgrade.recipe" }}' 2>/dev/null || true)"
  if [ "$have" = "$recipe_id" ]; then
    echo "build-image: $image is current (recipe $recipe_id), reused"
    exit 0
  fi
  echo "build-image: $image has recipe '${have:-none}', want $recipe_id: rebuilding"
fi

for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "build-image: '$tool' is missing: run 'make deps' (apt-get install debootstrap podman runc)" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/var/tmp}/cu-rootfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "build-image: debootstrap $suite into $work (a minute or two)"
debootstrap --variant=minbase --include="$include" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  echo "build-image: debootstrap failed; is $mirror reachable?" >&2
  exit 1
}
# Containers boot systemd: no getty on a console that does not exist, and
# apt keeps downloaded packages (the lab may share its package cache).
rm -f "$work/rootfs/etc/systemd/system/getty.target.wants/"* || true
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$work/rootfs/etc/apt/apt.conf.d/01keep-debs"
# dpkg as in Debian's own container images: no fsync per unpacked file (a lab container is thrown
# away, never power-cut), and no documentation, manual pages or translations, which nothing in the
# lab reads. An upgrade's dpkg runs (the release upgrade above all) are most of the tests' time.
cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/01-clinical-upgrade-lab" <<'EOF_DPKG'
force-unsafe-io
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF_DPKG
echo 'Acquire::Languages "none";' >"$work/rootfs/etc/apt/apt.conf.d/01no-translations"
tar -C "$work/rootfs" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change "LABEL org.clinical-upgrade.recipe=$recipe_id" \
  --change "LABEL org.clinical-upgrade.suite=$suite" \
  - "$image" >/dev/null
echo "build-image: $image built in $(( $(date +%s) - start )) s (recipe $recipe_id)"
