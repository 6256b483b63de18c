#!/usr/bin/env bash
# Release check: build the sdist and wheel, `twine check` them, install the wheel (not editable) into
# a fresh virtual environment that sees nothing of this checkout, and run the README's main job from
# another directory. Used by .ci/run and by .github/workflows/release.yml before anything is published.
#
#   scripts/check_wheel.sh [DIST_DIR]     # DIST_DIR defaults to dist/; it is emptied first
#
# Needs `build` and `twine` in the calling Python (pip install build twine); torch comes from
# $TORCH_SPEC (default torch==2.13.0; CI sets the +cpu build).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dist="$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== building sdist and wheel into $dist"
rm -f "$dist"/ffbench-*
"$python" -m build --outdir "$dist" "$repo" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; exit 1; }
shopt -s nullglob
wheels=("$dist"/ffbench-*.whl) sdists=("$dist"/ffbench-*.tar.gz)
[ ${#wheels[@]} = 1 ] && [ ${#sdists[@]} = 1 ] || { echo "expected one wheel and one sdist in $dist" >&2; exit 1; }
echo "== twine check"
"$python" -m twine check --strict "${wheels[0]}" "${sdists[0]}"

echo "== fresh venv: ${wheels[0]##*/}[native] and $torch_spec"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "${wheels[0]}[native]" "$torch_spec"

echo "== the README main job, from $work/elsewhere"
export FFBENCH_REGISTRY="$work/registry.sqlite"  # the run is recorded as in the README, but not in your registry
mkdir "$work/elsewhere" && cd "$work/elsewhere"
version="$("$work/venv/bin/ffbench" --version)"
echo "$version"
"$work/venv/bin/python" - "$repo/ffbench/__init__.py" "$version" <<'PY'
import ffbench, pathlib, re, sys
# the installed package, not the checkout; and the version it reports is the one source's
assert "site-packages" in ffbench.__file__, ffbench.__file__
source = re.search(r'__version__ = "([^"]+)"', pathlib.Path(sys.argv[1]).read_text()).group(1)
assert sys.argv[2] == f"ffbench, version {source}", (sys.argv[2], source)
PY
"$work/venv/bin/ffbench" run --model ffbench/transformer-ref --suite in_dist,dense --num 1000 --no-progress \
  --output-dir run
"$work/venv/bin/python" - <<'PY'
import json, pathlib
import ffbench
results = json.loads(pathlib.Path("run/results.json").read_text())
assert results["ffbench_version"] == ffbench.__version__, results["ffbench_version"]
print(f"results.json: ffbench_version {results['ffbench_version']}")
PY
echo "== wheel ok: ${wheels[0]##*/}"
