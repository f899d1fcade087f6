%% Helpers the test suites share.
-module(eflambe_test_util).

-include_lib("stdlib/include/assert.hrl").

-export([parse/1, wait_until/1, wait_armed/1, async_capture/3, run/2, run/3, with_warnings/1,
         distributed/1, code_paths/1]).
%% logger handler callback of with_warnings/1
-export([log/2]).

%% Folded text as [{Frames, Microseconds}].
parse(Folded) ->
    [begin
         [Stack, Count] = string:split(Line, " ", trailing),
         {string:split(Stack, ";", all), binary_to_integer(Count)}
     end || Line <- binary:split(Folded, <<"\n">>, [global, trim_all])].

%% Polls Fun for up to 5 seconds.
wait_until(Fun) ->
    wait_until(Fun, 250).

wait_until(Fun, 0) ->
    ?assert(Fun());
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, N - 1)
    end.

%% Until MFA carries eflambe's meta pattern ({meta, undefined} comes
%% while its module is not loaded, or while its patterns change).
wait_armed(MFA) ->
    wait_until(fun() -> case erlang:trace_info(MFA, meta) of
                            {meta, {eflambe_tracer, _}} -> true;
                            _ -> false
                        end
               end).

%% Starts capture in a helper process, once armed; returns a function that
%% waits for its result.
async_capture(MFA, N, Opts) ->
    Self = self(),
    Ref = make_ref(),
    spawn_link(fun() -> Self ! {Ref, eflambe:capture(MFA, N, Opts)} end),
    wait_armed(MFA),
    timer:sleep(200),
    fun() -> receive {Ref, R} -> R after 30000 -> error(capture_timeout) end end.

%% This node distributed (Prefix and the OS pid its name), and the options
%% of peer:start/1 that reach it. Short names need the host name to
%% resolve; where it does not, long names on 127.0.0.1 do. A node already
%% distributed (an earlier suite's doing) says which by its name.
distributed(Prefix) ->
    _ = os:cmd("epmd -daemon"),
    Name = Prefix ++ os:getpid(),
    Long = #{host => "127.0.0.1", longnames => true},
    case net_kernel:start([list_to_atom(Name), shortnames]) of
        {ok, _} ->
            #{};
        {error, {already_started, _}} ->
            case lists:suffix("@127.0.0.1", atom_to_list(node())) of
                true -> Long;
                false -> #{}
            end;
        {error, _} ->
            {ok, _} = net_kernel:start([list_to_atom(Name ++ "@127.0.0.1"), longnames]),
            Long
    end.

%% The peer:start/1 arguments that give a peer these modules' code.
code_paths(Modules) ->
    lists:append([["-pa", filename:dirname(code:which(M))] || M <- Modules]).

%% Runs a program without a shell: {ExitStatus, Output}.
run(Exe, Args) ->
    run(Exe, Args, []).

run(Exe, Args, PortOpts) ->
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, binary, stream, stderr_to_stdout | PortOpts]),
    collect(Port, <<>>).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, Acc}
    after 300000 -> error({timeout, Acc})
    end.

%% Runs Fun; {Result, Warnings}: the text of every warning logged meanwhile.
with_warnings(Fun) ->
    Id = list_to_atom("eflambe_test_warnings_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = logger:add_handler(Id, ?MODULE, #{level => warning, config => #{to => self(), id => Id}}),
    try Fun() of
        Result ->
            ok = logger:remove_handler(Id),
            {Result, warnings(Id, [])}
    after
        _ = logger:remove_handler(Id)
    end.

warnings(Id, Acc) ->
    receive {Id, Text} -> warnings(Id, [Text | Acc])
    after 0 -> lists:reverse(Acc)
    end.

log(#{level := Level, msg := Msg}, #{config := #{to := To, id := Id}})
  when Level =:= warning; Level =:= error ->
    Text = case Msg of
               {report, R} -> io_lib:format("~p", [R]);
               {string, S} -> S;
               {Format, Args} -> io_lib:format(Format, Args)
           end,
    To ! {Id, unicode:characters_to_binary(Text)},
    ok;
log(_Event, _Config) ->
    ok.
