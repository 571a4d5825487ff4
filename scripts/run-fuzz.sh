#!/bin/sh
# Builds every libFuzzer target tests/fuzz/fuzz_*.c with clang (libFuzzer +
# ASan + UBSan) against all of src/lib and BearSSL, into build/fuzz/, then
# runs each for SECONDS seconds on a copy of its corpus
# (tests/fuzz/corpus/<target without fuzz_>/, copied to build/fuzz/corpus/).
# Fails when a target does not build or finds a crash; a finding is kept in
# build/fuzz/artifacts/<target>/ and the log in build/fuzz/<target>.log.
#
#   scripts/run-fuzz.sh SECONDS        (make fuzz FUZZ_SECONDS=...)
#
# Environment: CLANG (default clang), HB (host build dir holding
# third-party/bearssl, default build/host; built if missing).
set -eu
secs=${1:-30}
case $secs in ''|*[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 1;; esac
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
cc=${CLANG:-clang}
hb=${HB:-build/host}
out=build/fuzz
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

failed=
for src in tests/fuzz/fuzz_*.c; do
	[ -e "$src" ] || continue
	name=$(basename "$src" .c)
	corpus=tests/fuzz/corpus/${name#fuzz_}
	if ! $cc $cflags $san -fsanitize=fuzzer -o "$out/$name" "$src" $objs \
	        -L"$bearssl/lib" -lbearssl; then
		echo "run-fuzz: $name: build failed" >&2
		failed="$failed $name"
		continue
	fi
	work=$out/corpus/${name#fuzz_}
	mkdir -p "$work" "$out/artifacts/$name"
	[ -d "$corpus" ] && cp -R "$corpus/." "$work/"
	echo "run-fuzz: $name for ${secs}s"
	if "./$out/$name" -max_total_time="$secs" -print_final_stats=1 \
	        -artifact_prefix="$out/artifacts/$name/" "$work" >"$out/$name.log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log")
		echo "run-fuzz: $name: ok, ${execs:-?} executions"
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
