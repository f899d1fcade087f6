%% @private
%% The NIF module: the erl_tracer callbacks and the session lifecycle, all in
%% C (c_src/efl_nif.c). It exports only enabled/3 and trace/5 as callbacks,
%% so it can serve as a meta tracer too: on OTP 25 a meta tracer module must
%% not export trace_call/5.
-module(eflambe_tracer).

-export([enabled/3, trace/5]).
-export([start_session/6, running_session/0, stop_session/1, fold/2]).

-on_load(init/0).

-nifs([enabled/3, trace/5, start_session/6, running_session/0, stop_session/1, fold/2]).

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

%% Opens the archive, allocates one ring of RingEvents per thread and
%% starts the flusher. Meta trace events are kept for RootPid only, and the
%% meta-traced function is a frame of its own when RootFrame is true.
%% Returns the tracer states for the process tracer and the meta tracer of
%% this session.
-spec start_session(file:filename_all(), pos_integer(), pos_integer(), pid() | undefined,
                    boolean(), iodata()) ->
          {ok, integer(), integer()} | {error, already_running | {atom(), term()}}.
start_session(_ArchivePath, _RingEvents, _Threads, _RootPid, _RootFrame, _Meta) ->
    erlang:nif_error(not_loaded).

%% The tracer state of the running session, if any.
-spec running_session() -> integer() | undefined.
running_session() ->
    erlang:nif_error(not_loaded).

%% Stops recording, drains the rings and closes the archive, if the running
%% session is the one TracerState names.
-spec stop_session(integer()) ->
          {ok, #{events := non_neg_integer(), dropped := non_neg_integer(),
                 bytes := non_neg_integer()}}
          | {error, not_running | {atom(), term()}}.
stop_session(_TracerState) ->
    erlang:nif_error(not_loaded).

%% Folds an archive into one output format (runs on a dirty CPU scheduler).
-spec fold(file:filename_all(), atom()) ->
          {ok, binary(), #{atom() => term()}} | {error, {atom(), term()}}.
fold(_ArchivePath, _Format) ->
    erlang:nif_error(not_loaded).
