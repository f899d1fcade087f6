# Shortcuts. The two commands of README.adoc are scripts/profile-compiler.sh
# and scripts/test.sh; benchmarks run on demand with `make bench`.

all:
	rebar3 compile

test:
	scripts/test.sh

bench: all
	$(MAKE) -C bench
	erl -noshell -pa _build/default/lib/eflambe/ebin -pa _build/bench \
	    -eval 'eflambe_bench:main([]), halt().'
	_build/bench/bench_archive
	_build/bench/bench_archive --writers

# Stacks against the real stacks of the same code running untraced
# (bench/eflambe_truth.erl, about a minute).
truth: all
	$(MAKE) -C bench
	erl -noshell -pa _build/default/lib/eflambe/ebin -pa _build/bench \
	    -eval 'eflambe_truth:main(), halt().'

# The stress runs of bench/eflambe_stress.erl (a few minutes).
stress: all
	$(MAKE) -C bench
	erl -noshell -pa _build/default/lib/eflambe/ebin -pa _build/bench \
	    -eval 'eflambe_stress:main(), halt().'

clean:
	rebar3 clean
	rm -rf _build

.PHONY: all test bench truth stress clean
