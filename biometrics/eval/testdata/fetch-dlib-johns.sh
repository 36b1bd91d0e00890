#!/bin/sh
# fetch-dlib-johns.sh [DIR]: put dlib's examples/johns into DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/faregate/dlib-johns): 55 face chips
# (150x150 JPEG) of 5 people, 11 each, one directory per person: the
# layout `faregate face calibrate DIR` reads.
#
# They come from Debian's dlib source package (bookworm, 19.24+dfsg-1),
# fetched with apt from the Debian archive this machine already uses:
# deb-src entries are made from its own sources in a private apt
# directory, so the system's apt state is not touched. The tarball is
# checked against the SHA-256 pinned below. dlib's example programs are
# public domain; the photographs are third-party, so use them only as test
# fixtures. Needs apt, tar and bzip2.
#
# johns.json beside this script was made from them with:
#   faregate face calibrate DIR --min-face 50 --save-descriptors johns.json
set -eu
dest=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/faregate/dlib-johns}
orig=dlib_19.24+dfsg.orig.tar.bz2
sha=66b4263822a2ff91a3e769e501c7d7927a13089e178c1427ec19cb0475823cf6

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts"
# deb-src twins of the system's Debian entries (deb822 and one-line).
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$work/parts/$(basename "$f")"
done
if [ -f /etc/apt/sources.list ]; then
	sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list >"$work/parts/system.list"
fi
apt_opts="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$work/parts \
 -o Dir::State::Lists=$work/lists -o Dir::Cache=$work/cache -o APT::Sandbox::User=root"
# shellcheck disable=SC2086
apt-get -qq $apt_opts update
# shellcheck disable=SC2086
uri=$(apt-get -qq $apt_opts source --print-uris dlib | awk -v f="$orig" '$2 == f { gsub("\047", "", $1); print $1 }')
if [ -z "$uri" ]; then
	echo "fetch-dlib-johns: the archive offers no $orig (a newer dlib?); update this script" >&2
	exit 1
fi
/usr/lib/apt/apt-helper -qq -o APT::Sandbox::User=root download-file "$uri" "$work/$orig" "SHA256:$sha"
mkdir -p "$dest"
tar -xjf "$work/$orig" -C "$dest" --strip-components=3 dlib-19.24+dfsg/examples/johns
echo "$dest: $(find "$dest" -name '*.jpg' | wc -l) images of $(find "$dest" -mindepth 1 -type d | wc -l) people"
