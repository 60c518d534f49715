#!/usr/bin/env bash
# Builds the Debian package from the source tree as the README says (dpkg-buildpackage -b -us -uc),
# in a copy of the tree under OUT_DIR so that the checkout stays clean and the .deb lands in
# OUT_DIR, and reuses it while the tree is unchanged: the build is a whole release build of the
# project, and the release and sanitizer suites both test the same package.
#
#   build_deb.sh SOURCE_ROOT OUT_DIR      -> OUT_DIR/gpubroker_<version>_amd64.deb
#
# The tree is what git sees (tracked files and untracked ones it does not ignore). Its fingerprint
# (every path and its content, less what the package build never reads: documentation and tests/,
# but for tests/data/, which holds the bench's fatbin) says whether the .deb in OUT_DIR was built
# from it. Exits 77 with the reason when the tools or build dependencies are missing
# (scripts/setup.sh installs them).
set -euo pipefail
source_root=$(cd "$1" && pwd)
out_dir=$2
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

for tool in dpkg-buildpackage dh git; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh installs it)"; exit 77; }
done

# One build at a time (the release and sanitizer suites, or two package tests, may ask at once).
exec 9>"$out_dir/.lock"
flock 9

files=$(mktemp)
trap 'rm -f "$files"' EXIT
git -C "$source_root" ls-files -z --cached --others --exclude-standard | sort -z |
  while IFS= read -r -d '' path; do [ -f "$source_root/$path" ] && printf '%s\0' "$path"; done > "$files"
fingerprint=$(cd "$source_root" && { grep -zvE '(^|/)[^/]*\.md$|^docs/|^tests/' "$files"; grep -zE '^tests/data/' "$files"; } |
  xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
version=$(cd "$source_root" && dpkg-parsechangelog -S Version)
deb="$out_dir/gpubroker_${version}_amd64.deb"
if [ -f "$deb" ] && [ "$(cat "$out_dir/fingerprint" 2>/dev/null)" = "$fingerprint" ]; then
  echo "reusing $deb (built from this tree: fingerprint $fingerprint)"
  exit 0
fi

rm -rf "$out_dir/src" "$out_dir"/*.deb "$out_dir"/*.buildinfo "$out_dir"/*.changes "$out_dir/fingerprint"
tree="$out_dir/src/gpubroker-$version"
mkdir -p "$tree"
(cd "$source_root" && tar --null --files-from="$files" -cf -) | tar -C "$tree" -xf -

if ! unmet=$(cd "$tree" && dpkg-checkbuilddeps 2>&1); then
  echo "SKIP: build dependencies missing (scripts/setup.sh installs them): $unmet"
  exit 77
fi
echo "building $deb from $tree (dpkg-buildpackage -b -us -uc; log: $out_dir/build.log)"
start=$(date +%s)
if ! (cd "$tree" && nice dpkg-buildpackage -b -us -uc -J"$(nproc)") > "$out_dir/build.log" 2>&1; then
  tail -50 "$out_dir/build.log"
  echo "FAIL: dpkg-buildpackage failed (whole log: $out_dir/build.log)"
  exit 1
fi
mv "$out_dir"/src/*.deb "$out_dir"/src/*.buildinfo "$out_dir"/src/*.changes "$out_dir"/
rm -rf "$out_dir/src"
echo "$fingerprint" > "$out_dir/fingerprint"
echo "built $(cd "$out_dir" && ls ./*.deb | tr '\n' ' ')in $(( $(date +%s) - start )) s"
