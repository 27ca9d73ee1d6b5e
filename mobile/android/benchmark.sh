#!/usr/bin/env bash
# Runs TFLite's benchmark_model for one .tflite model on an Android phone over adb: pushes the
# binary and the model to /data/local/tmp, makes the binary executable, runs it, prints its
# output and removes both files again (also after a failure or Ctrl-C). The same steps as
# tfdistill.bench.android.benchmark; its output is what parse_benchmark_model_output reads.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: benchmark.sh [options] BENCHMARK_MODEL_BINARY MODEL.tflite [-- MORE_TOOL_FLAGS...]

  -s SERIAL   device serial, needed when several devices are attached ('adb devices')
  -t N        --num_threads (default 1)
  -r N        --num_runs (default 50)
  -w N        --warmup_runs (default 1)
  -c MASK     run under 'taskset MASK', a hex CPU mask (e.g. f0: cpus 4-7)
  -x          --use_xnnpack=false (default true)
  -g          --use_gpu=true
  -n          --use_nnapi=true
  -p          --enable_op_profiling=true
  -h          this help

The tool's output goes to stdout; adb's own messages go to stderr. Set ADB to use another adb.
Exit status: 0 done; 1 a push or chmod failed, or the tool failed or printed no results;
2 bad usage, adb missing or no single usable device.
EOF
}

die() {
  echo "benchmark.sh: $1" >&2
  exit "${2:-2}"
}

ADB=${ADB:-adb}
SERIAL=""
THREADS=1
RUNS=50
WARMUP=1
MASK=""
XNNPACK=true
GPU=false
NNAPI=false
PROFILE=false
while getopts ":s:t:r:w:c:xgnph" opt; do
  case $opt in
    s) SERIAL=$OPTARG ;;
    t) THREADS=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    w) WARMUP=$OPTARG ;;
    c) MASK=$OPTARG ;;
    x) XNNPACK=false ;;
    g) GPU=true ;;
    n) NNAPI=true ;;
    p) PROFILE=true ;;
    h) usage; exit 0 ;;
    :) usage >&2; die "option -$OPTARG needs a value" ;;
    *) usage >&2; die "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -lt 2 ]]; then
  usage >&2
  die "need the benchmark_model binary and a .tflite model"
fi
BINARY=$1
MODEL=$2
shift 2
if [[ $# -gt 0 && $1 == "--" ]]; then
  shift
fi

[[ -f $BINARY ]] || die "benchmark_model binary not found: $BINARY"
[[ -f $MODEL ]] || die "model file not found: $MODEL"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "-t must be an integer >= 1, got '$THREADS'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "-r must be an integer >= 1, got '$RUNS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "-w must be an integer >= 0, got '$WARMUP'"
[[ -z $MASK || $MASK =~ ^(0x)?[0-9a-fA-F]+$ ]] || die "-c must be a hex CPU mask, got '$MASK'"
command -v "$ADB" >/dev/null 2>&1 ||
  die "adb not found ('$ADB'): install the Android platform tools or set ADB=/path/to/adb"

devices=$("$ADB" devices) || die "'adb devices' failed"
listed=$(awk -F'\t' '/^List of devices/ { on = 1; next } on && NF >= 2' <<<"$devices")
describe() { awk -F'\t' 'NF >= 2 { printf "%s%s (%s)", sep, $1, $2; sep = ", " }'; }
ready=$(awk -F'\t' '$2 == "device" { print $1 }' <<<"$listed")
not_ready=$(awk -F'\t' '$2 != "device"' <<<"$listed" | describe)
if [[ -n $SERIAL ]]; then
  grep -qx -- "$SERIAL" <<<"$ready" ||
    die "device $SERIAL is not ready; adb devices lists: $(describe <<<"$listed")"
else
  count=$(grep -c . <<<"$ready" || true)
  if [[ $count -eq 0 ]]; then
    die "no Android device found${not_ready:+ (not ready: $not_ready)}; connect a phone with USB debugging on"
  elif [[ $count -gt 1 ]]; then
    die "$count devices attached ($(paste -sd ' ' <<<"$ready")); pick one with -s SERIAL"
  fi
  SERIAL=$ready
fi
adb_dev=("$ADB" -s "$SERIAL")

token=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
remote_binary=/data/local/tmp/tfdistill-$token-benchmark_model
remote_model=/data/local/tmp/tfdistill-$token-$(basename "$MODEL" | tr -c 'A-Za-z0-9._\n-' '_')
status_file=$(mktemp)

cleanup() {
  "${adb_dev[@]}" shell "rm -f $remote_binary $remote_model" >/dev/null 2>&1 ||
    echo "benchmark.sh: warning: could not remove $remote_binary $remote_model" >&2
  rm -f "$status_file"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${adb_dev[@]}" push "$BINARY" "$remote_binary" >&2 || die "adb push of $BINARY failed" 1
"${adb_dev[@]}" shell "chmod 755 $remote_binary" >&2 ||
  die "could not make $remote_binary executable" 1
"${adb_dev[@]}" push "$MODEL" "$remote_model" >&2 || die "adb push of $MODEL failed" 1

tool="$remote_binary --graph=$remote_model --num_threads=$THREADS --use_xnnpack=$XNNPACK"
tool+=" --use_gpu=$GPU --use_nnapi=$NNAPI --num_runs=$RUNS --warmup_runs=$WARMUP"
tool+=" --enable_op_profiling=$PROFILE"
for flag in "$@"; do
  tool+=" '${flag//\'/\'\\\'\'}'"
done
if [[ -n $MASK ]]; then
  tool="taskset ${MASK#0x} $tool"
fi

adb_status=0
"${adb_dev[@]}" shell "$tool; echo tfdistill_exit=\$?" 2>&1 | awk -v status_file="$status_file" '
  { sub(/\r$/, "") }
  /^tfdistill_exit=[0-9]+$/ { exit_status = substr($0, 16); next }
  /Inference timings in us|BENCHMARK RESULTS/ { results = 1 }
  { print; fflush() }
  END { print (exit_status == "" ? "none" : exit_status), results + 0 > status_file }
' || adb_status=$?

read -r tool_status have_results <"$status_file"
if [[ $tool_status == none ]]; then
  die "adb shell failed (exit $adb_status) before the tool finished" 1
elif [[ $tool_status -ne 0 ]]; then
  die "benchmark_model exited with status $tool_status on $SERIAL (see its output above)" 1
elif [[ $have_results -ne 1 ]]; then
  die "benchmark_model printed no results on $SERIAL (see its output above)" 1
fi
