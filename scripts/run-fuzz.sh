#!/bin/sh
# Builds every libFuzzer target tests/fuzz/fuzz_*.c with clang (libFuzzer +
# ASan + UBSan) against all of src/lib and BearSSL, into build/fuzz/, then
# runs each for SECONDS seconds (or FUZZ_RUNS executions) on a copy of its
# corpus (tests/fuzz/corpus/<target without fuzz_>/, copied to
# <out>/corpus/). Fails when a target does not build or finds a crash; a
# finding is kept in <out>/artifacts/<target>/ and the log in <out>/<target>.log.
#
#   scripts/run-fuzz.sh SECONDS        (make fuzz FUZZ_SECONDS=...)
#   FUZZ_RUNS=1000000 scripts/run-fuzz.sh   (make fuzz-million: the
#                                      acceptance run, see docs/FUZZING.md)
#
# Environment: CLANG (default clang), HB (host build dir holding
# third-party/bearssl, default build/host; built if missing), FUZZ_OUT
# (output dir, default build/fuzz: use your own when others fuzz too),
# FUZZ_RUNS (run each target for this many executions instead of SECONDS),
# FUZZ_TARGETS (space-separated names such as "pem users", default all),
# FUZZ_BUILD_ONLY=1 (build the targets, run nothing), FUZZ_NICE (nice
# level of the runs, default 10).
set -eu
secs=${1:-30}
case $secs in ''|*[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 1;; esac
runs=${FUZZ_RUNS:-}
case $runs in *[!0-9]*) echo "run-fuzz: FUZZ_RUNS must be a number" >&2; exit 1;; esac
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
cc=${CLANG:-clang}
hb=${HB:-build/host}
out=${FUZZ_OUT:-build/fuzz}
only=${FUZZ_TARGETS:-}
nicelvl=${FUZZ_NICE:-10}
bearssl=$hb/third-party/bearssl
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-std=c11 -g -O1 -fno-omit-frame-pointer -D_DEFAULT_SOURCE -D_GNU_SOURCE -Isrc/lib -I$bearssl/inc"

if [ ! -f "$bearssl/lib/libbearssl.a" ]; then
	scripts/build-thirdparty.sh host "$hb/third-party"
fi
mkdir -p "$out/obj"

# The library once, instrumented for coverage.
objs=
for src in src/lib/*.c; do
	[ -e "$src" ] || continue
	obj=$out/obj/$(basename "$src" .c).o
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find src/lib -name '*.h' -newer "$obj")" ]; then
		$cc $cflags $san -fsanitize=fuzzer-no-link -c -o "$obj" "$src"
	fi
	objs="$objs $obj"
done

# wanted NAME: is target NAME (without fuzz_) selected by FUZZ_TARGETS?
wanted() {
	[ -z "$only" ] && return 0
	for w in $only; do [ "$w" = "$1" ] && return 0; done
	return 1
}

# limit_args: how long each run lasts.
limit_args() {
	if [ -n "$runs" ]; then echo "-runs=$runs"; else echo "-max_total_time=$secs"; fi
}

failed=
for src in tests/fuzz/fuzz_*.c; do
	[ -e "$src" ] || continue
	name=$(basename "$src" .c)
	wanted "${name#fuzz_}" || continue
	corpus=tests/fuzz/corpus/${name#fuzz_}
	if ! $cc $cflags $san -fsanitize=fuzzer -o "$out/$name" "$src" $objs \
	        -L"$bearssl/lib" -lbearssl; then
		echo "run-fuzz: $name: build failed" >&2
		failed="$failed $name"
		continue
	fi
	[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && continue
	work=$out/corpus/${name#fuzz_}
	mkdir -p "$work" "$out/artifacts/$name"
	[ -d "$corpus" ] && cp -R "$corpus/." "$work/"
	echo "run-fuzz: $name: $(limit_args), corpus $(ls "$work" | wc -l) files"
	start=$(date +%s)
	if nice -n "$nicelvl" "./$out/$name" $(limit_args) -print_final_stats=1 \
	        -artifact_prefix="$out/artifacts/$name/" "$work" >"$out/$name.log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log")
		echo "run-fuzz: $name: ok, ${execs:-?} executions in $(($(date +%s) - start)) s, corpus $(ls "$work" | wc -l) files"
	else
		echo "run-fuzz: $name: FAILED (see $out/$name.log, $out/artifacts/$name/)" >&2
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$out/$name.log" | head -5 >&2 || true
		failed="$failed $name"
	fi
done

if [ -n "$failed" ]; then
	echo "run-fuzz: failed:$failed" >&2
	exit 1
fi
