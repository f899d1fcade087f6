%% @private
%% Parses and checks the options of eflambe's API before anything is armed,
%% so every mistake a user can make ends in {error, Reason}.
-module(eflambe_options).

-export([parse/1, output_formats/0]).

-export_type([opts/0]).

-include_lib("kernel/include/file.hrl").

-type opts() :: #{output_format := eflambe:output_format(),
                  output_directory := file:filename() | undefined,
                  return := eflambe:return_kind(),
                  buffer_size := pos_integer()}.

-define(EVENT_BYTES, 32).
-define(DEFAULT_BUFFER_BYTES, 1048576).

-spec output_formats() -> [eflambe:output_format()].
output_formats() ->
    [brendan_gregg].

-spec defaults() -> opts().
defaults() ->
    #{output_format => brendan_gregg,
      output_directory => undefined,
      return => value,
      buffer_size => ?DEFAULT_BUFFER_BYTES}.

%% Options come as a proplist (Erlang) or keyword list (Elixir).
-spec parse(term()) -> {ok, opts()} | {error, term()}.
parse(Options) when is_list(Options) ->
    parse(Options, defaults());
parse(Options) ->
    {error, {bad_options, Options}}.

-spec parse(list(), opts()) -> {ok, opts()} | {error, term()}.
parse([], Opts) ->
    {ok, Opts};
parse([{Key, Value} = Option | Rest], Opts) when is_atom(Key) ->
    case maps:is_key(Key, defaults()) of
        false ->
            {error, {unknown_option, Option}};
        true ->
            case check(Key, Value) of
                {ok, Checked} -> parse(Rest, Opts#{Key := Checked});
                {error, _} = Error -> Error
            end
    end;
parse([Option | _], _Opts) ->
    {error, {unknown_option, Option}}.

-spec check(atom(), term()) -> {ok, term()} | {error, term()}.
check(output_format, Format) ->
    case lists:member(Format, output_formats()) of
        true -> {ok, Format};
        false -> {error, {bad_output_format, Format, {expected_one_of, output_formats()}}}
    end;
check(output_directory, Dir) ->
    check_directory(Dir);
check(return, Kind) when Kind =:= value; Kind =:= flamegraph; Kind =:= filename ->
    {ok, Kind};
check(return, Kind) ->
    {error, {bad_return, Kind, {expected_one_of, [value, flamegraph, filename]}}};
check(buffer_size, Bytes) when is_integer(Bytes), Bytes >= 64 * ?EVENT_BYTES,
                               Bytes =< 1 bsl 30 ->
    {ok, Bytes};
check(buffer_size, Bytes) ->
    {error, {bad_buffer_size, Bytes, {expected_bytes_between, 64 * ?EVENT_BYTES, 1 bsl 30}}}.

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
