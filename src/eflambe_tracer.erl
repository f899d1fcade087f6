%% @private
%% The NIF module: the erl_tracer callbacks and the session lifecycle, all in
%% C (c_src/efl_nif.c). It exports only enabled/3 and trace/5 as callbacks,
%% so it can serve as a meta tracer too: on OTP 25 a meta tracer module must
%% not export trace_call/5.
-module(eflambe_tracer).

-export([enabled/3, trace/5]).
-export([start_session/1, running_session/0, stop_session/1, halt_session/2, capture_ready/1, fold/4, convert_folded/3, diff_folded/4, interval_costs/1,
         archive_header/1, record_samples/3, add_call_sites/4, read_code/1, archive_calls/1, capabilities/0]).
-export([session_of/1]).
-export_type([stop_reason/0, limit/0]).

-on_load(init/0).

-nifs([enabled/3, trace/5, start_session/1, running_session/0, stop_session/1, halt_session/2,
       capture_ready/1, fold/4, convert_folded/3, diff_folded/4, interval_costs/1,
       archive_header/1, record_samples/3, add_call_sites/4, read_code/1, archive_calls/1, capabilities/0]).

%% Why a run stopped recording before its end (c_src/efl_stop.h).
-type stop_reason() :: none | limit() | timeout | stopped.
-type limit() :: max_events | max_bytes.

-spec init() -> ok | {error, term()}.
init() ->
    Dir = case code:priv_dir(eflambe) of
              {error, bad_name} ->
                  filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
              PrivDir ->
                  PrivDir
          end,
    erlang:load_nif(filename:join(Dir, "eflambe_tracer"), 0).

-spec enabled(atom(), term(), pid() | port()) -> trace | discard | remove.
enabled(_TraceTag, _TracerState, _Tracee) ->
    erlang:nif_error(not_loaded).

-spec trace(atom(), term(), pid() | port(), term(), map()) -> ok.
trace(_TraceTag, _TracerState, _Tracee, _TraceTerm, _Opts) ->
    erlang:nif_error(not_loaded).

%% Opens the archive, allocates one ring of ring_events per thread and
%% starts the flusher. For apply, meta trace events are kept for root_pid
%% only; for capture, `budget' calls of the meta-traced function are
%% admitted (one in `every'), and `notify' receives eflambe_capture_done as
%% each ends. The meta-traced function is a frame of its own when
%% root_frame is true. Returns the tracer states of the process tracer and
%% of the meta tracer of this session.
-spec start_session(#{archive := file:filename_all(), ring_events := pos_integer(),
                      threads := pos_integer(), meta := iodata(),
                      root_pid => pid() | undefined, root_frame => boolean(),
                      budget => pos_integer() | undefined, every => pos_integer(),
                      notify => pid() | undefined, max_events => pos_integer(),
                      max_bytes => pos_integer(), atom() => term()}) ->
          {ok, integer(), integer(), #{follow_call := integer(), follow_take := integer(),
                                       server := integer(), follow_spawn := integer(),
                                       follow_seq := integer()}}
          | {error, already_running | {atom(), term()}}.
start_session(_Params) ->
    erlang:nif_error(not_loaded).

%% The tracer state of the running session, if any.
-spec running_session() -> integer() | undefined.
running_session() ->
    erlang:nif_error(not_loaded).

%% Stops recording, drains the rings and closes the archive, if the running
%% session is the one TracerState names. `modules': those the events named;
%% `processes': those the events came from or named (spawned, followed).
-spec stop_session(integer()) ->
          {ok, #{events := non_neg_integer(), dropped := non_neg_integer(),
                 bytes := non_neg_integer(), modules := [module()], processes := [pid()],
                 stopped := stop_reason()}}
          | {error, not_running | {atom(), term()}}.
stop_session(_TracerState) ->
    erlang:nif_error(not_loaded).

%% Stops recording now, and notes why in the archive; stop_session/1 still
%% ends the session.
-spec halt_session(integer(), timeout | stopped) -> ok | {error, not_running}.
halt_session(_TracerState, _Reason) ->
    erlang:nif_error(not_loaded).

%% Folds an archive into one output format, on a dirty CPU scheduler. With
%% Split, one flamegraph per profiled call, in the order capture gives its
%% results (those that ended by their end, then the others by their start):
%% #{pid, ended := return_from | exception_from | lost | open, start_us, end_us,
%% data}. Stacks are cut at max_depth (1..1024) functions; with recursion
%% collapse, a function calling itself stays one frame; with raw_time, the
%% tracing cost is not taken out (efl_cost.h). With output, the flamegraph
%% is streamed into that new file (created with O_EXCL, never through a
%% link) and the result is {file, Output}; with Split, output is a stem,
%% each call's file STEM-<N><extension> and its data {file, N}.
-spec fold(file:filename_all(), atom(), boolean(),
           #{max_depth := 1..1024, recursion := exact | collapse,
             raw_time => boolean(), output => file:filename_all()}) ->
          {ok, binary() | {file, file:filename_all()} | [map()], #{atom() => term()}}
          | {error, {atom(), term()}}.
fold(_ArchivePath, _Format, _Split, _FoldOpts) ->
    erlang:nif_error(not_loaded).

%% Folded stacks (as the brendan_gregg format writes them) in another
%% output format, on a dirty CPU scheduler: a cluster's profile, the
%% stacks each node folded under its name. With output, streamed into that
%% new file ({file, Output}); meta: the "key=value" lines of the header the
%% outputs read (the node, the target). Time-ordered formats get each
%% process's stacks end to end, in the order folded stacks keep none of.
-spec convert_folded(binary(), atom(), #{output => file:filename_all(), meta => binary()}) ->
          {ok, binary() | {file, file:filename_all()}, #{atom() => term()}}
          | {error, {atom(), term()}}.
convert_folded(_Folded, _Format, _Opts) ->
    erlang:nif_error(not_loaded).

%% The differential profile of two folded profiles (Base, New), as
%% convert_folded/3 writes one: in brendan_gregg (a line per stack with
%% both counts), svg (coloured by change) or pprof (Base's samples
%% negated); with normalize, Base scaled to New's total first.
-spec diff_folded(binary(), binary(), atom(),
                  #{output => file:filename_all(), meta => binary(), normalize => boolean()}) ->
          {ok, binary() | {file, file:filename_all()}, #{atom() => term()}}
          | {error, {atom(), term()}}.
diff_folded(_Base, _New, _Format, _Opts) ->
    erlang:nif_error(not_loaded).

%% The mean interval between a process's consecutive events of kinds call
%% and return_to in an archive (eflambe_calibrate's).
-spec interval_costs(file:filename_all()) ->
          {ok, #{{call | return_to, call | return_to} => non_neg_integer()}}
          | {error, {atom(), term()}}.
interval_costs(_ArchivePath) ->
    erlang:nif_error(not_loaded).

%% Appends the site table of the modules (their object code, and their
%% source file's name where known) to a closed archive; Bifs are the BIFs
%% among the functions they call; Processes say what processes are called
%% ({<<"<0.85.0>">>, <<"my_server">>}). The modules whose code the reader
%% could not follow are left out and named.
-spec add_call_sites(file:filename_all(),
                     [{module(), binary()} | {module(), binary(), binary()}], [mfa()],
                     [{binary(), binary()}]) ->
          {ok, #{modules := non_neg_integer(), pairs := non_neg_integer(),
                 unreadable := [{module(), bad_argument | unsupported_version | limit_exceeded}]}}
          | {error, {atom(), term()}}.
add_call_sites(_ArchivePath, _Beams, _Bifs, _Processes) ->
    erlang:nif_error(not_loaded).

%% A module's object file, if it is a regular file of at most 32 MiB; read
%% on a dirty scheduler, not by the file server (a FIFO would block it).
-spec read_code(file:filename_all()) -> {ok, binary()} | {error, atom()}.
read_code(_Path) ->
    erlang:nif_error(not_loaded).

%% A lazy capture's call patterns are in place: calls may be admitted.
-spec capture_ready(integer()) -> ok | {error, not_running}.
capture_ready(_TracerState) ->
    erlang:nif_error(not_loaded).

%% The profiled calls of an archive, in the order capture gives them.
-spec archive_calls(file:filename_all()) ->
          {ok, [#{index := pos_integer(), pid := string(), start_us := non_neg_integer(),
                  duration_us := non_neg_integer(),
                  ended := return_from | exception_from | lost | open}]}
          | {error, {atom(), term()}}.
archive_calls(_ArchivePath) ->
    erlang:nif_error(not_loaded).

%% The metadata lines of an archive's header.
-spec archive_header(file:filename_all()) -> {ok, binary()} | {error, {atom(), term()}}.
archive_header(_ArchivePath) ->
    erlang:nif_error(not_loaded).

%% One tick of sampling: each {Pid, StackTrace} (process_info's
%% current_stacktrace) had that stack since the session's tick before
%% ended (the first tick: for the last PeriodNs nanoseconds).
-spec record_samples(integer(), [{pid(), list()}], pos_integer()) -> ok | {error, not_running}.
record_samples(_TracerState, _Samples, _PeriodNs) ->
    erlang:nif_error(not_loaded).

%% What this build supports: each output format with its usual file name
%% extension (c_src/efl_writer.h keeps the one list), those written to a
%% file only, those that draw a diff (eflambe:diff/3), and the size of a
%% trace event in the rings.
-spec capabilities() -> #{formats := [{atom(), string()}], file_only := [atom()],
                          diff := [atom()], event_bytes := pos_integer()}.
capabilities() ->
    erlang:nif_error(not_loaded).

%% The session a tracer state belongs to: a state is the session's id
%% times 8 plus its role (c_src/efl_nif.h).
-spec session_of(integer()) -> integer().
session_of(State) ->
    State bsr 3.
