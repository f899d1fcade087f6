%% The cost of {follow, true}: a client making 100,000 gen_server calls to
%% a server that answers at once, untraced, profiled by eflambe:apply, and
%% profiled following the calls into the server. Rounds interleaved, the
%% median of each; the time is the client's loop, inside the profiled call.
-module(eflambe_bench_ping).
-behaviour(gen_server).

-export([main/0, init/1, handle_call/3, handle_cast/2, loop/2]).

-define(CALLS, 100000).
-define(ROUNDS, 5).

main() ->
    {ok, Server} = gen_server:start(?MODULE, [], []),
    Variants = [untraced, apply, apply_follow],
    Rounds = [[{V, run(V, Server)} || V <- Variants] || _ <- lists:seq(1, ?ROUNDS)],
    Median = fun(V) -> median([proplists:get_value(V, R) || R <- Rounds]) end,
    Untraced = Median(untraced),
    io:format("~nCost of following: ~b gen_server calls to a server that answers at once, "
              "~b rounds, median~n", [?CALLS, ?ROUNDS]),
    io:format("~-16s ~12s ~12s ~12s~n", ["variant", "median ms", "us/call", "x untraced"]),
    [io:format("~-16s ~12.1f ~12.2f ~12.2f~n",
               [V, Median(V) / 1000, Median(V) / ?CALLS, Median(V) / Untraced])
     || V <- Variants],
    io:format("~nfollow / apply: ~.2f (what following adds to a traced call: the server "
              "traced too, three meta events a call)~n", [Median(apply_follow) / Median(apply)]),
    gen_server:stop(Server).

run(untraced, Server) ->
    loop(Server, ?CALLS);
run(apply, Server) ->
    {ok, Us} = eflambe:apply({?MODULE, loop, [Server, ?CALLS]}, [{return, value}, {output_directory, "/tmp"}]),
    Us;
run(apply_follow, Server) ->
    {ok, Us} = eflambe:apply({?MODULE, loop, [Server, ?CALLS]},
                             [{return, value}, {follow, true}, {output_directory, "/tmp"}]),
    Us.

%% The client: microseconds for N calls.
loop(Server, N) ->
    T0 = erlang:monotonic_time(microsecond),
    calls(Server, N),
    erlang:monotonic_time(microsecond) - T0.

calls(_Server, 0) -> ok;
calls(Server, N) -> pong = gen_server:call(Server, ping), calls(Server, N - 1).

median(L) ->
    lists:nth((length(L) + 1) div 2, lists:sort(L)).

init([]) -> {ok, []}.
handle_call(ping, _From, S) -> {reply, pong, S}.
handle_cast(_, S) -> {noreply, S}.
