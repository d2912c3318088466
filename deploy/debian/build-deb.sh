#!/bin/sh
# build-deb.sh - build aibrix-runtime_<version>_<arch>.deb with dpkg-deb alone (no network,
# no debhelper): a release-style meson build installed with --prefix=/usr into a staging
# root, plus the control files of this folder. Usage: build-deb.sh [BUILD_DIR]
# (default build-deb/). Prints the path of the .deb as the last line.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/deploy/debian"
out=$(realpath -m "${1:-$top/build-deb}")
meson_dir="$out/meson"
root="$out/root"

[ -f "$meson_dir/build.ninja" ] || meson setup "$meson_dir" "$top" --prefix=/usr >/dev/null
ninja -C "$meson_dir" >/dev/null
rm -rf "$root"
meson install -C "$meson_dir" --destdir "$root" --no-rebuild --strip --quiet

version=$(meson introspect --projectinfo "$meson_dir" |
          python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
arch=$(dpkg --print-architecture)

# Debian policy: man pages compressed, a copyright file, no build-tree paths.
find "$root/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +
install -D -m 0644 "$here/copyright" "$root/usr/share/doc/aibrix-runtime/copyright"

install -d -m 0755 "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
    -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$root" | cut -f1)/" \
    "$here/control.in" > "$root/DEBIAN/control"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done

deb="$out/aibrix-runtime_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
