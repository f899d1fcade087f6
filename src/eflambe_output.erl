%% @private
%% Delivers folded flamegraphs: written to files, returned, or both.
-module(eflambe_output).

-export([write/3, write_calls/3]).

%% {return, flamegraph} writes no file unless a directory was asked for.
-spec write(binary(), #{extension := string(), _ => _}, eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
write(Data, _Info, #{return := flamegraph, output_directory := undefined}) ->
    {ok, Data};
write(Data, #{extension := Ext}, #{return := Return, output_directory := Dir}) ->
    File = filename:join(directory(Dir), file_name(Ext)),
    case file:write_file(File, Data) of
        ok when Return =:= flamegraph -> {ok, Data};
        ok -> {ok, File};
        {error, Reason} -> {error, {write_output, File, file:format_error(Reason)}}
    end.

%% One result per profiled call that ended, in the order they ended.
-spec write_calls([map()], map(), eflambe_options:opts()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_calls(Windows, Info, Opts) ->
    Ended = lists:keysort(1, [{End, Data} || #{ended := E, end_us := End, data := Data} <- Windows,
                                             E =/= open]),
    write_all([Data || {_, Data} <- Ended], Info, Opts, []).

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
