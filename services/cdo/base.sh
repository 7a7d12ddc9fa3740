#!/usr/bin/env bash
# base.sh makes the base image of the CDO example service, with no
# registry: a Debian bookworm root file system made with debootstrap, with
# cdo installed in the chroot, imported into the local Docker engine with
# `docker import`. It does nothing if the image is already there.
#
#   bash services/cdo/base.sh            # makes gef/cdo-base:bookworm
#
# Environment: GEF_CDO_BASE names the image (default gef/cdo-base:bookworm);
# DEBIAN_MIRROR the mirror (default http://deb.debian.org/debian). It needs
# root (or sudo) for debootstrap and chroot, and takes a few minutes.
set -euo pipefail

tag=${GEF_CDO_BASE:-gef/cdo-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

have_image() { docker image inspect "$tag" >/dev/null 2>&1; }

if have_image; then
	echo "base.sh: $tag is already in the engine" >&2
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
if ! command -v debootstrap >/dev/null; then
	$sudo apt-get install -y --no-install-recommends debootstrap >&2
fi

# Two test runs at once build the base once.
exec 9>"${TMPDIR:-/tmp}/gef-cdo-base.lock"
flock 9
if have_image; then
	echo "base.sh: $tag was made meanwhile" >&2
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gef-cdo-base.XXXXXX")
rootfs=$work/rootfs
cleanup() {
	$sudo umount "$rootfs/proc" 2>/dev/null || true
	$sudo rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
echo "base.sh: debootstrap $suite from $mirror" >&2
$sudo debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >&2

echo "base.sh: installing cdo in the chroot" >&2
$sudo mount -t proc proc "$rootfs/proc"
$sudo chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
	sh -c 'apt-get update && apt-get install -y --no-install-recommends cdo && apt-get clean' >&2
$sudo umount "$rootfs/proc"

# cdo's plotting library drags in a GPU stack and plotting data that no
# operator of this service loads. Drop those packages, unless cdo links to
# a file of theirs; the smoke test below proves cdo still works.
# shellcheck disable=SC2016 # expanded by the shell in the chroot
$sudo chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c '
	linked=$(ldd /usr/bin/cdo | awk "/=>/ { n = split(\$3, p, \"/\"); print p[n] }")
	for pkg in libllvm15 libz3-4 libgl1-mesa-dri libmagics++-data libgs10 libgs10-common fonts-urw-base35 \
		poppler-data libopenblas0-pthread; do
		dpkg -s "$pkg" >/dev/null 2>&1 || continue
		if dpkg -L "$pkg" | awk -F/ "{ print \$NF }" | grep -qxF "$linked"; then
			echo "base.sh: keeping $pkg: cdo links to it"
			continue
		fi
		dpkg --purge --force-depends "$pkg" >/dev/null
	done' >&2

# Only what a service needs at run time: no package lists, caches, docs or
# translations.
$sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
	"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
	"$rootfs"/usr/share/locale/* "$rootfs"/tmp/*
$sudo chroot "$rootfs" cdo --version >&2
# A smoke test: make a field, average it, describe the result.
$sudo chroot "$rootfs" sh -c 'cd /tmp && cdo -s -f nc const,280,r4x2 c.nc && cdo -s fldmean c.nc m.nc &&
	cdo -s info m.nc && rm -f c.nc m.nc' >&2

echo "base.sh: importing the root file system as $tag" >&2
$sudo tar --numeric-owner -C "$rootfs" -c . | docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'CMD ["/bin/sh"]' \
	--message "Debian $suite (debootstrap, minbase) with cdo" - "$tag" >&2
echo "base.sh: made $tag in $(($(date +%s) - start)) s" >&2
