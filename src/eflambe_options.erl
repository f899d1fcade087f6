%% @private
%% Parses and checks the options of eflambe's API before anything is armed,
%% so every mistake a user can make ends in {error, Reason}.
-module(eflambe_options).

-export([parse/2, output_formats/0]).

-export_type([opts/0]).

-include_lib("kernel/include/file.hrl").

-type opts() :: #{output_format := eflambe:output_format(),
                  hz => 1..1000,
                  duration => pos_integer(),
                  pids => all | [pid()],
                  output_directory := file:filename() | undefined,
                  return := eflambe:return_kind(),
                  buffer_size => pos_integer(),
                  archive => file:filename() | undefined,
                  fetch_archive => file:filename() | undefined,
                  open => undefined | file:filename(),
                  max_depth := 1..1024,
                  recursion := exact | collapse,
                  max_events => pos_integer(),
                  max_bytes => pos_integer(),
                  exclude => [module() | {module(), atom(), arity() | '_'}],
                  timeout => timeout(),
                  every => pos_integer(),
                  spawned => boolean(),
                  node => node()}.

-define(EVENT_BYTES, 32).
-define(DEFAULT_BUFFER_BYTES, 1048576).
%% A run stops recording beyond these (see eflambe's option() type).
-define(DEFAULT_MAX_EVENTS, 100000000).
-define(DEFAULT_MAX_BYTES, 1073741824).

-spec output_formats() -> [eflambe:output_format()].
output_formats() ->
    [brendan_gregg, perf, speedscope, svg].

%% Each mode's options, with their defaults.
-spec defaults(mode()) -> opts().
defaults(apply) ->
    #{output_format => brendan_gregg,
      output_directory => undefined,
      return => value,
      buffer_size => ?DEFAULT_BUFFER_BYTES,
      archive => undefined,
      open => undefined,
      max_depth => 1024,
      recursion => exact,
      exclude => [],
      max_events => ?DEFAULT_MAX_EVENTS,
      max_bytes => ?DEFAULT_MAX_BYTES,
      timeout => infinity};
defaults(capture) ->
    (defaults(apply))#{return => filename,
                       every => 1,
                       spawned => false,
                       node => node(),
                       fetch_archive => undefined};
defaults(sample) ->
    (maps:without([exclude, timeout], defaults(apply)))#{return => filename,
                                                        hz => 97,
                                                        duration => 10000,
                                                        pids => all,
                                                        node => node(),
                                                        fetch_archive => undefined};
defaults(replay) ->
    #{output_format => brendan_gregg,
      output_directory => undefined,
      return => filename,
      open => undefined,
      max_depth => 1024,
      recursion => exact}.

-type mode() :: apply | capture | sample | replay.

%% Options come as a proplist (Erlang) or keyword list (Elixir).
-spec parse(mode(), term()) -> {ok, opts()} | {error, term()}.
parse(Mode, Options) when is_list(Options) ->
    parse(Mode, Options, defaults(Mode));
parse(_Mode, Options) ->
    {error, {bad_options, Options}}.

-spec parse(mode(), list(), opts()) -> {ok, opts()} | {error, term()}.
parse(_Mode, [], Opts) ->
    {ok, Opts};
parse(Mode, [{Key, Value} = Option | Rest], Opts) when is_atom(Key) ->
    case maps:is_key(Key, Opts) of
        false ->
            {error, {unknown_option, Option}};
        true ->
            case check(Mode, Key, Value) of
                {ok, Checked} -> parse(Mode, Rest, Opts#{Key := Checked});
                {error, _} = Error -> Error
            end
    end;
parse(_Mode, [Option | _], _Opts) ->
    {error, {unknown_option, Option}}.

-spec check(mode(), atom(), term()) -> {ok, term()} | {error, term()}.
check(_, output_format, Format) ->
    case lists:member(Format, output_formats()) of
        true -> {ok, Format};
        false -> {error, {bad_output_format, Format, {expected_one_of, output_formats()}}}
    end;
check(_, output_directory, Dir) ->
    check_directory(Dir);
check(Mode, return, Kind) ->
    Kinds = case Mode of
                apply -> [value, flamegraph, filename];
                _ -> [flamegraph, filename]
            end,
    case lists:member(Kind, Kinds) of
        true -> {ok, Kind};
        false -> {error, {bad_return, Kind, {expected_one_of, Kinds}}}
    end;
check(_, buffer_size, Bytes) when is_integer(Bytes), Bytes >= 64 * ?EVENT_BYTES,
                                  Bytes =< 1 bsl 30 ->
    {ok, Bytes};
check(_, buffer_size, Bytes) ->
    {error, {bad_buffer_size, Bytes, {expected_bytes_between, 64 * ?EVENT_BYTES, 1 bsl 30}}};
check(_, archive, Path) ->
    check_archive_path(Path);
check(_, fetch_archive, Path) ->
    check_archive_path(Path);
check(_, open, Program) ->
    check_program(Program);
check(_, max_depth, D) when is_integer(D), D >= 1, D =< 1024 ->
    {ok, D};
check(_, max_depth, D) ->
    {error, {bad_max_depth, D, {expected_between, 1, 1024}}};
check(_, recursion, R) when R =:= exact; R =:= collapse ->
    {ok, R};
check(_, recursion, R) ->
    {error, {bad_recursion, R, {expected_one_of, [exact, collapse]}}};
check(_, exclude, List) when is_list(List) ->
    case [X || X <- List, not excludable(X)] of
        [] -> {ok, List};
        [Bad | _] -> {error, {bad_exclude, Bad, {expected, 'Module | {Module, Function, Arity}'}}}
    end;
check(_, exclude, List) ->
    {error, {bad_exclude, List, {expected, list}}};
check(_, timeout, infinity) ->
    {ok, infinity};
check(_, timeout, Ms) when is_integer(Ms), Ms >= 0 ->
    {ok, Ms};
check(_, timeout, Ms) ->
    {error, {bad_timeout, Ms, {expected, 'infinity | milliseconds'}}};
check(_, Limit, N) when (Limit =:= max_events orelse Limit =:= max_bytes), is_integer(N), N >= 1 ->
    {ok, N};
check(_, Limit, N) when Limit =:= max_events; Limit =:= max_bytes ->
    {error, {list_to_atom("bad_" ++ atom_to_list(Limit)), N, {expected, positive_integer}}};
check(_, node, Node) when is_atom(Node) ->
    {ok, Node};
check(_, node, Node) ->
    {error, {bad_node, Node}};
check(sample, hz, Hz) when is_integer(Hz), Hz >= 1, Hz =< 1000 ->
    {ok, Hz};
check(sample, hz, Hz) ->
    {error, {bad_hz, Hz, {expected_between, 1, 1000}}};
check(sample, duration, Ms) when is_integer(Ms), Ms >= 1 ->
    {ok, Ms};
check(sample, duration, Ms) ->
    {error, {bad_duration, Ms, {expected, milliseconds}}};
check(sample, pids, all) ->
    {ok, all};
%% Pids of the node sampled (which {node, Node} may make another one).
check(sample, pids, Pids) when is_list(Pids) ->
    case lists:all(fun erlang:is_pid/1, Pids) of
        true -> {ok, Pids};
        false -> {error, {bad_pids, Pids, {expected, 'all | [pid()]'}}}
    end;
check(sample, pids, Pids) ->
    {error, {bad_pids, Pids, {expected, 'all | [pid()]'}}};
check(capture, spawned, B) when is_boolean(B) ->
    {ok, B};
check(capture, spawned, B) ->
    {error, {bad_spawned, B, {expected, boolean}}};
check(capture, every, K) when is_integer(K), K >= 1 ->
    {ok, K};
check(capture, every, K) ->
    {error, {bad_every, K, {expected, positive_integer}}}.

-spec excludable(term()) -> boolean().
excludable(M) when is_atom(M) -> true;
excludable({M, F, A}) when is_atom(M), is_atom(F), A =:= '_' -> true;
excludable({M, F, A}) when is_atom(M), is_atom(F), is_integer(A), A >= 0, A =< 255 -> true;
excludable(_) -> false.

-spec check_directory(term()) -> {ok, file:filename()} | {error, term()}.
check_directory(Dir) ->
    case io_lib:char_list(Dir) orelse is_binary(Dir) of
        false ->
            {error, {bad_output_directory, Dir}};
        true ->
            Name = unicode:characters_to_list(Dir),
            case file:read_file_info(Name) of
                {ok, #file_info{type = directory}} ->
                    writable(Name);
                {ok, _} ->
                    {error, {output_directory, Name, "not a directory"}};
                {error, Reason} ->
                    {error, {output_directory, Name, file:format_error(Reason)}}
            end
    end.

%% The program to open the output with: speedscope (its npm command), or any
%% program by name or path, run without a shell with the file as its only
%% argument. hotspot reads perf.data files only, which eflambe does not
%% write: refused.
-spec check_program(term()) -> {ok, file:filename()} | {error, term()}.
check_program(hotspot) ->
    {error, {open, hotspot, "hotspot reads only perf.data files (from perf record); open the "
                            "perf or speedscope output with speedscope or Firefox Profiler"}};
check_program(speedscope) ->
    find_program("speedscope");
check_program(Program) when is_atom(Program) ->
    find_program(atom_to_list(Program));
check_program(Program) ->
    case io_lib:char_list(Program) orelse is_binary(Program) of
        true -> find_program(unicode:characters_to_list(Program));
        false -> {error, {bad_open, Program}}
    end.

-spec find_program(string()) -> {ok, file:filename()} | {error, term()}.
find_program(Name) ->
    Bare = filename:pathtype(Name) =:= relative andalso length(filename:split(Name)) =:= 1,
    Found = case Bare of
                true -> os:find_executable(Name);
                false -> filelib:is_regular(Name) andalso Name
            end,
    case Found of
        false -> {error, {open, Name, "not installed (not found in PATH)"}};
        Path -> {ok, Path}
    end.

%% Where the archive is to be kept: a file name in a writable directory.
-spec check_archive_path(term()) -> {ok, file:filename()} | {error, term()}.
check_archive_path(Path) ->
    case io_lib:char_list(Path) orelse is_binary(Path) of
        false ->
            {error, {bad_archive, Path}};
        true ->
            Name = unicode:characters_to_list(Path),
            %% A regular file is replaced; anything else (a link, a FIFO, a
            %% directory) is refused: the archive is never written through it.
            case file:read_link_info(Name) of
                {ok, #file_info{type = directory}} ->
                    {error, {archive, Name, "is a directory"}};
                {ok, #file_info{type = Type}} when Type =/= regular ->
                    {error, {archive, Name, "not a regular file"}};
                _ ->
                    case check_directory(filename:dirname(filename:absname(Name))) of
                        {ok, _} -> {ok, Name};
                        {error, {output_directory, Dir, Why}} -> {error, {archive, Dir, Why}}
                    end
            end
    end.

%% Mode bits lie for root and on some mounts: try it.
-spec writable(file:filename()) -> {ok, file:filename()} | {error, term()}.
writable(Dir) ->
    Probe = filename:join(Dir, ".eflambe-write-check-" ++ os:getpid()),
    case file:write_file(Probe, <<>>) of
        ok ->
            _ = file:delete(Probe),
            {ok, Dir};
        {error, Reason} ->
            {error, {output_directory, Dir, file:format_error(Reason)}}
    end.
