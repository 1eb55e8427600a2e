#!/usr/bin/env bash
# Run the test suite. Installs the Debian packages the service tests drive (chromium for the
# web UI, PostgreSQL for the store, Orthanc with its DICOMweb and GDCM plugins for the PACS node,
# espeak-ng and sox for the speech tests) when they are missing and we may install them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_config >/dev/null 2>&1 || need+=(postgresql)
{ command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
[ -e /usr/share/orthanc/plugins/libOrthancGdcm.so ] || need+=(orthanc-gdcm)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)   # speech tests: clips spoken by espeak-ng
command -v sox >/dev/null 2>&1 || need+=(sox)               # ... converted and measured by sox
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${need[*]} (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need[*]} (sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

exec .venv/bin/python -m pytest "$@"
