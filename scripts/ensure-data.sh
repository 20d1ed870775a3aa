#!/usr/bin/env bash
# Make sure fmbench finds Fashion-MNIST before the main job: an explicit directory, the cache or
# Debian's location; else a verified download from the mirrors; else, where apt is available,
# Debian's package dataset-fashion-mnist (it installs the four files under /usr/share/datasets).
set -u
FMBENCH="${1:-fmbench}"

if "$FMBENCH" data --no-download >/dev/null 2>&1; then
  exit 0
fi
echo "ensure-data: Fashion-MNIST not found locally; trying the download mirrors" >&2
if FMBENCH_DOWNLOAD_RETRIES="${FMBENCH_DOWNLOAD_RETRIES:-2}" FMBENCH_DOWNLOAD_TIMEOUT="${FMBENCH_DOWNLOAD_TIMEOUT:-20}" \
   "$FMBENCH" data >/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "ensure-data: the mirrors are unreachable; as root run: apt-get install dataset-fashion-mnist" >&2
      exit 2
    fi
  fi
  echo "ensure-data: the mirrors are unreachable; installing Debian's package dataset-fashion-mnist with apt-get" >&2
  if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
     && "$FMBENCH" data --no-download >/dev/null; then
    echo "ensure-data: installed; the data is in /usr/share/datasets/fashion-mnist" >&2
    exit 0
  fi
fi
echo "ensure-data: could not get Fashion-MNIST. Either install Debian's package dataset-fashion-mnist," \
     "or put the four IDX files (train-images-idx3-ubyte.gz, ...) in a directory and set FMBENCH_DATA_DIR=DIR," \
     "or allow access to a mirror (fmbench data --mirror URL)." >&2
exit 2
