%% @private
%% Delivers folded flamegraphs: written to files, returned, or both.
-module(eflambe_output).

-export([write/3, write_calls/3, write_all/3, stream_target/1, extension/1]).

%% Where a single flamegraph is to be streamed by the folder, when the
%% result is a file and no binary of it is wanted: a new file name in the
%% output directory.
-spec stream_target(eflambe_options:opts()) -> {ok, file:filename()} | none.
stream_target(#{return := flamegraph}) ->
    none;
stream_target(#{output_directory := Dir} = Opts) ->
    {ok, filename:join(directory(Dir), file_name(extension(Opts)))}.

%% The usual file name extension of each output format.
-spec extension(eflambe_options:opts()) -> string().
extension(#{output_format := brendan_gregg}) -> ".folded";
extension(#{output_format := perf}) -> ".perf.txt";
extension(#{output_format := speedscope}) -> ".speedscope.json";
extension(#{output_format := svg}) -> ".svg".

%% {return, flamegraph} writes no file unless a directory was asked for,
%% or a program is to open it. A flamegraph the folder streamed into its
%% file ({file, File}) is only reported.
-spec write(binary() | {file, file:filename()}, #{extension := string(), _ => _},
            eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
write({file, File}, _Info, Opts) ->
    open(File, maps:get(open, Opts, undefined)),
    {ok, File};
write(Data, Info, #{return := flamegraph, output_directory := undefined} = Opts) ->
    case maps:get(open, Opts, undefined) of
        undefined -> {ok, Data};
        _ -> write_file(Data, Info, Opts)
    end;
write(Data, Info, Opts) ->
    write_file(Data, Info, Opts).

-spec write_file(binary(), #{extension := string(), _ => _}, eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
write_file(Data, #{extension := Ext}, #{return := Return, output_directory := Dir} = Opts) ->
    File = filename:join(directory(Dir), file_name(Ext)),
    case file:write_file(File, Data) of
        ok ->
            open(File, maps:get(open, Opts, undefined)),
            case Return of
                flamegraph -> {ok, Data};
                _ -> {ok, File}
            end;
        {error, Reason} ->
            {error, {write_output, File, file:format_error(Reason)}}
    end.

%% Starts the viewer on the file, without a shell (nothing in a file or
%% directory name is ever interpreted), and does not wait for it.
-spec open(file:filename(), file:filename() | undefined) -> ok.
open(_File, undefined) ->
    ok;
open(File, Program) ->
    _ = spawn(fun() ->
                      Port = open_port({spawn_executable, Program},
                                       [{args, [File]}, exit_status, nouse_stdio]),
                      receive {Port, {exit_status, _}} -> ok end
              end),
    ok.

%% One result per profiled call that ended, in the order they ended.
-spec write_calls([map()], map(), eflambe_options:opts()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_calls(Windows, Info, Opts) ->
    Ended = lists:keysort(1, [{End, Data} || #{ended := E, end_us := End, data := Data} <- Windows,
                                             E =/= open]),
    write_all([Data || {_, Data} <- Ended], Info, Opts).

%% One result per flamegraph, in order.
-spec write_all([binary()], map(), eflambe_options:opts()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_all(Datas, Info, Opts) ->
    write_all(Datas, Info, Opts, []).

-spec write_all([binary()], map(), eflambe_options:opts(), list()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_all([], _Info, _Opts, Acc) ->
    {ok, lists:reverse(Acc)};
write_all([Data | Rest], Info, Opts, Acc) ->
    case write(Data, Info, Opts) of
        {ok, Result} -> write_all(Rest, Info, Opts, [Result | Acc]);
        {error, _} = Error -> Error
    end.

-spec directory(file:filename() | undefined) -> file:filename().
directory(undefined) ->
    {ok, Cwd} = file:get_cwd(),
    Cwd;
directory(Dir) ->
    Dir.

%% eflambe-20261123T102822-1234<Ext>: sorts by time, unique within the node.
-spec file_name(string()) -> string().
file_name(Ext) ->
    {{Y, Mo, D}, {H, Mi, S}} = calendar:local_time(),
    Stamp = io_lib:format("~4..0B~2..0B~2..0BT~2..0B~2..0B~2..0B", [Y, Mo, D, H, Mi, S]),
    lists:flatten(["eflambe-", Stamp, "-",
                   integer_to_list(erlang:unique_integer([positive])), Ext]).
