%% @doc eflambe: flamegraphs of Erlang and Elixir calls, traced in C.
%%
%% `apply/1,2' runs a function in the calling process with call tracing
%% on, for that process and every process it spawns during the call, and
%% turns the trace into a flamegraph. `capture/1,2,3' profiles the next N
%% calls of a function made by any process on the node, each from the
%% function's entry: no code change, no recompile, no mocking. `sample/1'
%% profiles the whole node by sampling stacks, without call tracing.
%% `replay/2' folds a kept trace archive again, into any format.
%%
%% The tracer is a NIF: each trace event is a 32-byte record written into
%% the calling scheduler thread's own ring, a C thread compresses the rings
%% into a zstd trace archive, and a C folder rebuilds the stacks from the
%% archive as it is written.
%%
%% == Example ==
%% ```
%% 1> eflambe:apply({lists, seq, [1, 10]}, [{output_directory, "/tmp"}]).
%% {ok,[1,2,3,4,5,6,7,8,9,10]}
%% 2> eflambe:apply({fun compile:file/2, ["x.erl", [binary]]}, [{return, filename}]).
%% {ok,"/home/me/eflambe-20261123T102822-17.folded"}
%% 3> {ok, Folded} = eflambe:apply({my_mod, work, [42]}, [{return, flamegraph}]).
%% 4> eflambe:capture({my_server, handle_call, 3}, 2, [{timeout, 60000}]).
%% {ok,["/home/me/eflambe-20261123T110312-88.folded",
%%      "/home/me/eflambe-20261123T110312-89.folded"]}
%% 5> eflambe:sample([{duration, 5000}, {output_format, svg}]).
%% {ok,"/home/me/eflambe-20261123T120512-7.svg"}
%% '''
%% A folded line reads `<0.85.0>;my_mod:work/1;my_mod:inner/2 1234': the
%% process, the stack from the profiled function down, and the
%% microseconds that stack was on top, less what tracing cost the process
%% meanwhile (measured on the node; `{compensate, false}' keeps it).
%% `sleep' on top is time the process waited in a receive, `runnable' time
%% it was ready to run and waited for a scheduler, `gc' time spent
%% collecting its garbage, `[os preempted]' time the OS ran something else
%% on its scheduler thread's core, `[dropped N events]' where events were
%% lost. With `{compensate, false}' the weights of one call add up to its
%% wall time. The stacks are the real ones: a tail
%% call replaces its caller's frame (eflambe reads which calls are tail
%% calls in the traced modules' code, when recording stops), body
%% recursion keeps its depth, and a module's first call runs under its
%% caller, not under the error handler that loaded it.
%%
%% == Safety ==
%% While a trace run is armed every function of every loaded module carries
%% a local call-trace pattern: untraced processes on the node pay a few
%% nanoseconds per call, traced ones about 0.3 microseconds per call and per
%% message taken, and a CPU clock read per switch; the first run on a node
%% measures what tracing costs there (40-70 ms, once). When
%% the run ends (the call returns or raises, the N calls are captured, a
%% limit or the timeout is reached, stop/0, the caller dies) eflambe
%% removes every trace pattern and flag it set, and with them any local
%% call patterns you set yourself (with dbg, say). A capture refuses to
%% start while another tracer is in use on the node; apply, while its
%% caller has a tracer or another tracer traces some process's calls, so
%% an existing trace is never broken or flooded.
%% The tracer never blocks a scheduler: when a ring is full, events are
%% dropped and counted. Every run is bounded (`max_events', `max_bytes',
%% `timeout'), and memory by the ring size (`buffer_size', per scheduler
%% thread) whatever the call does. Only one profiling run at a time on a
%% node.
-module(eflambe).

-export([apply/1, apply/2, capture/1, capture/2, capture/3, sample/1, stop/0, replay/2, calls/1, diff/3]).

-compile({no_auto_import, [apply/2]}).

-export_type([fun_spec/0, option/0, capture_option/0, sample_option/0, output_format/0,
              return_kind/0]).

-type fun_spec() :: {module(), atom(), [term()]} | {function(), [term()]} | fun(() -> term()).

-type output_format() :: brendan_gregg | perf | speedscope | svg | perf_data | pprof.
%% `brendan_gregg' (default): folded stacks, one line per distinct stack,
%% as flamegraph.pl, inferno and speedscope read them (`.folded').
%% `perf': `perf script' text, as speedscope and Firefox Profiler import it
%% (`.linux-perf.txt', the name speedscope's documentation gives it, so its
%% importer knows it by name). `speedscope': speedscope's JSON, one time-ordered profile
%% per process, to step through what the call did (`.speedscope.json').
%% `svg': a self-contained interactive flamegraph (`.svg').
%% `perf_data': perf's binary perf.data, for `perf report', `perf script'
%% and hotspot (`.perf.data'), with the function names in a small ELF file
%% of symbols beside it (`.perf.data.syms'); written to a file only (one
%% per call for a capture). `pprof': pprof's gzipped profile.proto, for
%% `go tool pprof', Pyroscope, Parca, Grafana and speedscope (`.pb.gz').

-type return_kind() :: value | flamegraph | filename.
%% `value' (default): `{ok, Value}' with what the function returned (if
%% its profile cannot be delivered, `{error, {profile_lost, Reason, {value,
%% Value}}}': the call ran, its value is not lost).
%% `flamegraph': `{ok, Binary}' with the formatted flamegraph; no file is
%% written unless `output_directory' is given. `filename': `{ok, File}'.

-type option() ::
        {output_format, output_format()}
      | {output_directory, file:filename()}
      | {return, return_kind()}
      | {buffer_size, auto | pos_integer()}
      | {archive, file:filename()}
      | {open, speedscope | hotspot | atom() | file:filename()}
      | {max_depth, 1..1024}
      | {recursion, exact | collapse}
      | {compensate, boolean()}
      | {exclude, [module() | {module(), atom(), arity() | '_'}]}
      | {max_events, pos_integer()}
      | {max_bytes, pos_integer()}
      | {timeout, timeout()}
      | {follow, boolean() | [atom() | pid()]}.
%% `output_directory': where the flamegraph file goes (default: the current
%% directory). `buffer_size': bytes of ring per scheduler thread (default
%% `auto': what a busy scheduler records in 20-40 ms, by the node's
%% calibrated cost of an event, 1 to 16 MiB; 8 MiB on a 2-core KVM guest). `archive': keep the run's trace archive at this
%% path, for replay/2 or `priv/eflambe-fold' (default: a temporary file,
%% deleted after folding). `open': once written, open the file in that
%% program (`speedscope', the npm package's command, or any program by name
%% or path), started without a shell; a program that is not installed is an
%% error before anything is traced. `hotspot' reads only perf.data: with
%% `{output_format, perf_data}'. `max_depth' (default 1024): stacks are cut at that many
%% functions, the deeper time staying with the last frame. `recursion'
%% (default `exact'): every frame of a recursion is drawn, as deep as it
%% really was; `collapse' draws a function that calls itself as one frame.
%% `compensate' (default `true'): the tracing cost the node measured
%% (recorded in the archive) is taken out of the frames' time; `false'
%% keeps the traced run's own time.
%% `exclude' (default []): modules and functions not traced at all (their
%% time goes to their callers), to cut the volume at the source; not for
%% replay.
%% `max_events' (default 100000000) and `max_bytes' (archive size, default
%% 1073741824): recording stops when either is reached. `timeout' (default
%% `infinity'): for apply, recording stops after that many milliseconds
%% (the call goes on); for capture, how long to wait for the calls. A
%% profile cut short says so: a warning is logged, SVG and speedscope
%% titles say "partial", and lost events appear as [dropped N events]
%% frames. `follow' (default false): `true' follows the work the call asks
%% of gen_servers and gen_statems (gen:call) into them, transitively, and
%% shows it under the caller's gen:do_call/4 frame, after a [queued] frame
%% for the time its request waited; `[Name | Pid]' follows only into those.
%% Other clients' requests are not shown. Refused while someone else uses
%% sequential tracing (the profiled call carries a seq_trace token).

-type capture_option() ::
        option()
      | {every, pos_integer()}
      | {arm, eager | lazy}
      | {keep, all | slowest | median}
      | {spawned, boolean()}
      | {node, node()}
      | {nodes, [node()] | connected}
      | {fetch_archive, file:filename()}.
%% `every' (default 1): capture one call in K. `arm' (default `eager'):
%% `eager' puts a local call pattern on every function as the capture
%% starts, so the first call is captured, and untraced processes pay for
%% it while the capture waits (2.5-4x on call-heavy code); `lazy' puts one
%% on the target only: the node runs at full speed while it waits, and the
%% first call, passed over, puts the others in place (the N calls after it
%% are captured). `keep' (default `all'): `slowest' or `median' gives only
%% that call's result, by duration among those that ended, as `{Index,
%% Result}' (Index its place among all, as calls/1 gives it).
%% `spawned' (default false):
%% also trace the processes a captured call spawns, in its flamegraph.
%% `node' (default: this node): run the capture on that node of the
%% cluster (eflambe must be loadable there); the flamegraphs come back and
%% are written here; `archive' is a path on that node, and
%% `{fetch_archive, Path}' copies the archive back here.
%% `nodes': capture on each of those nodes at once (`connected': this one
%% and those it is connected to), the first N calls wherever they come (N
%% in all); each call's flamegraph has its node as its root frame (the
%% `node' label in pprof). `{ok, Results, Failed}': Failed names each node
%% that could not take part, with why; the others' calls come back all the
%% same. Not with `node', `fetch_archive' or `keep'.
%% `return' is `filename' (default) or `flamegraph'.

-type sample_option() ::
        {hz, 1..1000}
      | {duration, pos_integer()}
      | {pids, all | [pid()]}
      | {node, node()}
      | {nodes, [node()] | connected}
      | {fetch_archive, file:filename()}
      | {output_format, output_format()}
      | {output_directory, file:filename()}
      | {return, flamegraph | filename}
      | {open, atom() | file:filename()}
      | {archive, file:filename()}
      | {buffer_size, auto | pos_integer()}
      | {max_depth, 1..1024}
      | {recursion, exact | collapse}
      | {max_events, pos_integer()}
      | {max_bytes, pos_integer()}.

%% @equiv apply(FunSpec, [])
-spec apply(fun_spec()) -> {ok, term()} | {error, term()}.
apply(FunSpec) ->
    apply(FunSpec, []).

%% @doc Profiles one call made by the calling process, with the processes
%% it spawns. An exception raised by the function reaches the caller
%% unchanged, after tracing is switched off.
-spec apply(fun_spec(), [option()]) -> {ok, term()} | {error, term()}.
apply(FunSpec, Options) ->
    eflambe_apply:apply(FunSpec, Options).

%% @equiv capture(MFA, 1, [])
-spec capture(mfa()) -> {ok, [binary() | file:filename()]} | {error, term()}.
capture(MFA) ->
    capture(MFA, 1, []).

%% @equiv capture(MFA, N, [])
-spec capture(mfa(), pos_integer()) -> {ok, [binary() | file:filename()]} | {error, term()}.
capture(MFA, N) ->
    capture(MFA, N, []).

%% @doc Profiles the next N calls of Module:Function/Arity (local functions
%% too) made by any process on the node, and blocks until they have all
%% returned, then gives one flamegraph per call, in the order the calls
%% ended: `{ok, [Result]}' (Result per the `return' option: `filename' by
%% default, or `flamegraph'). A call that raised is marked `(exception)' on
%% its process frame. With `{timeout, Ms}', what was captured by then
%% (`{error, timeout}' if nothing).
-spec capture(mfa(), pos_integer(), [capture_option()]) ->
          {ok, [binary() | file:filename() | {pos_integer(), binary() | file:filename()}]}
          | {ok, [binary() | file:filename()], [{node(), term()}]}
          | {error, term()}.
capture(MFA, N, Options) ->
    eflambe_capture:capture(MFA, N, Options).

%% @doc Profiles the node by sampling, without call tracing: `{hz, Hz}'
%% times a second (default 97, at most 1000) for `{duration, Ms}' (default
%% 10000), the stack of each process that is running or runnable (of
%% `{pids, [Pid]}' only, or `all', the default) is taken; each sample
%% weighs the time since the tick before (a period, or more when a busy
%% node kept the sampler waiting). One flamegraph, in any output format, `replay'-able;
%% `{node, Node}' samples another node; `{nodes, Nodes | connected}'
%% samples each for the same duration, at once, into one flamegraph whose
%% roots are the nodes: `{ok, Result, Failed}' (Failed: the nodes that
%% could not take part, with why). Costs what process_info costs for
%% each process at each tick: see the benchmark in README.adoc.
-spec sample([sample_option()]) ->
          {ok, binary() | file:filename()}
          | {ok, binary() | file:filename(), [{node(), term()}]}
          | {error, term()}.
sample(Options) ->
    eflambe_sample:sample(Options).

%% @doc What changed between two profiles: Base and New are each a trace
%% archive (all of it), `{Archive, Index}' (one call of a capture's
%% archive, Index as calls/1 gives it), a folded file, or `{folded,
%% Binary}'. Their stacks are matched by name. Options: `output_format'
%% `brendan_gregg' (default: a line per stack, `stack BASE NEW', as
%% flamegraph.pl's difffolded.pl writes them), `svg' (New's widths, each
%% frame coloured by the change of its own time: red grew, blue shrank,
%% white the same; frames only one side has are dashed and say so) or
%% `pprof' (New's samples and Base's negated: `go tool pprof -top' shows
%% the changes); `{normalize, true}' scales Base to New's total first;
%% `output_directory', `return' (`filename', the default, or
%% `flamegraph'), `open', and `max_depth', `recursion', `compensate' for
%% archives.
-spec diff(term(), term(), [option() | {normalize, boolean()}]) ->
          {ok, binary() | file:filename()} | {error, term()}.
diff(Base, New, Options) ->
    eflambe_diff:diff(Base, New, Options).

%% @doc Folds a trace archive kept with `{archive, Path}' into any output
%% format, on this node or another: `{ok, Result}' for an archive of apply,
%% `{ok, [Result]}' for one of capture, the same flamegraphs the live run
%% gave. A truncated archive (a node that died mid-run) is folded up to its
%% last complete frame, with a warning logged. Options: `output_format',
%% `output_directory', `return' (`filename', the default, or `flamegraph').
-spec replay(file:filename(), [option()]) -> {ok, term()} | {error, term()}.
replay(Archive, Options) ->
    eflambe_replay:replay(Archive, Options).

%% @doc The calls a trace archive holds (a capture's kept with `{archive,
%% Path}`; an apply's holds one): `{ok, [#{index, pid, start_us,
%% duration_us, ended}]}`, in the order capture and replay give their
%% flamegraphs, `index' their position there (1 first; `eflambe-fold --call
%% K' folds the K-th). `start_us' counts from the first call's start;
%% `ended' is `return_from', `exception_from', `lost' (its end was among
%% lost events) or `open' (the run ended first). To find the slow call:
%% sort by `duration_us'.
-spec calls(file:filename()) -> {ok, [map()]} | {error, term()}.
calls(Archive) ->
    eflambe_replay:calls(Archive).

%% @doc Ends the running profile, from any process: a capture returns what
%% it has; an apply stops tracing and its call goes on. A run whose owner
%% process was killed is ended here: nothing of it stays armed.
-spec stop() -> ok | {error, not_running}.
stop() ->
    eflambe_session:stop_running().
