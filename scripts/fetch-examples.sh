#!/bin/sh
# fetch-examples.sh downloads the official FHIR R4 examples package
# (hl7.fhir.r4.examples@4.0.1, CC0: every example of the specification) from
# the npm registry and unpacks it into a cache directory OUTSIDE the repository:
#
#   ${FHIRGATE_EXAMPLES_CACHE:-$HOME/.cache/fhirgate}/hl7.fhir.r4.examples-4.0.1/package/*.json
#
# fhir/validate's TestAllOfficialExamples validates every resource in it (set
# FHIRGATE_EXAMPLES_DIR to use another copy). Idempotent: does nothing when the
# package is already there. Needs npm, tar and sha256sum (or shasum).
set -eu

spec="hl7.fhir.r4.examples@4.0.1"
tarball="hl7.fhir.r4.examples-4.0.1.tgz"
# sha256 of the tarball npm serves (its npm shasum, sha1, is 537ea7db3f3c7b3575fe2eaa7808bad21261cca3).
want_sha256="dce87f1b5b9341867033f7d1f544fa1b5232503f6d62813887ac6b8a8b6cb682"

cache="${FHIRGATE_EXAMPLES_CACHE:-$HOME/.cache/fhirgate}"
dest="$cache/hl7.fhir.r4.examples-4.0.1"

if [ -f "$dest/package/package.json" ]; then
	echo "fetch-examples: $spec already in $dest"
	exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch-examples.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "fetch-examples: npm pack $spec (18.8 MB) ..."
(cd "$tmp" && npm pack "$spec" --silent >/dev/null)

if command -v sha256sum >/dev/null 2>&1; then
	got=$(sha256sum "$tmp/$tarball" | cut -d' ' -f1)
else
	got=$(shasum -a 256 "$tmp/$tarball" | cut -d' ' -f1)
fi
if [ "$got" != "$want_sha256" ]; then
	echo "fetch-examples: $tarball has sha256 $got, want $want_sha256" >&2
	exit 1
fi

mkdir "$tmp/out"
tar -xzf "$tmp/$tarball" -C "$tmp/out"
rm -rf "$dest"
mv "$tmp/out" "$dest"
echo "fetch-examples: $(ls "$dest/package" | wc -l | tr -d ' ') files in $dest/package"
