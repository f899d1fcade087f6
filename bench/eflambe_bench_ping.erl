%% The cost of {follow, true}: a client making 100,000 gen_server calls to
%% a server that answers at once, as many plain requests ({self(), ping}
%% answered {self(), pong}) to a process that answers at once, and 20,000
%% local erpc calls (each served by a process spawned for it), untraced,
%% profiled by eflambe:apply, and profiled following the calls. Rounds
%% interleaved, the median of each; the time is the client's loop, inside
%% the profiled call.
-module(eflambe_bench_ping).
-behaviour(gen_server).

-export([main/0, unrelated/1, init/1, handle_call/3, handle_cast/2, loop/3]).

-define(ROUNDS, 5).

main() ->
    {ok, Server} = gen_server:start(?MODULE, [], []),
    measure(gen_server, Server, 100000,
            "gen_server calls to a server that answers at once",
            "the server traced too, three steps told by local match specs a call"),
    unrelated(Server),
    Plain = spawn(fun plain/0),
    measure(plain, Plain, 100000,
            "plain requests to a process that answers at once",
            "the receiver traced too, two send events and two sequential trace events a call"),
    Plain ! stop,
    measure(erpc, node(), 20000,
            "local erpc calls with a timeout (a process spawned for each)",
            "four meta events a call; apply traces the spawned process either way"),
    gen_server:stop(Server).

%% What a run costs the rest of the node: an unrelated process making
%% 50,000 gen_server calls to Server, with no run, while an apply (of a
%% sleep) runs, and while one that follows calls runs; interleaved, median
%% of 5.
unrelated(Server) ->
    Client = fun() ->
                     Self = self(),
                     spawn(fun() ->
                                   T0 = erlang:monotonic_time(),
                                   _ = calls(gen_server, Server, 50000),
                                   Self ! {us, erlang:convert_time_unit(
                                                 erlang:monotonic_time() - T0, native, nanosecond)
                                               / 50000 / 1000}
                           end),
                     receive {us, T} -> T end
             end,
    During = fun(Opts) ->
                     Self = self(),
                     spawn(fun() -> Self ! {run, eflambe:apply({timer, sleep, [2000]},
                                                               [{return, flamegraph} | Opts])}
                           end),
                     wait_armed(),
                     T = Client(),
                     receive {run, _} -> T end
             end,
    Rounds = [[{none, Client()}, {apply, During([])}, {apply_follow, During([{follow, true}])}]
              || _ <- lists:seq(1, ?ROUNDS)],
    Median = fun(V) -> median([proplists:get_value(V, R) || R <- Rounds]) end,
    io:format("~nAn unrelated process's gen_server call while a run runs: ~.2f us with none, "
              "~.2f (~.2fx) during an apply, ~.2f (~.2fx) during an apply that follows calls~n",
              [Median(none), Median(apply), Median(apply) / Median(none), Median(apply_follow),
               Median(apply_follow) / Median(none)]).

%% Until the run is armed (its session started and its patterns set).
wait_armed() ->
    case eflambe_tracer:running_session() of
        undefined -> timer:sleep(5), wait_armed();
        _ -> timer:sleep(50)
    end.

measure(Kind, To, Calls, What, Why) ->
    Variants = [untraced, apply, apply_follow],
    Rounds = [[{V, run(V, Kind, To, Calls)} || V <- Variants] || _ <- lists:seq(1, ?ROUNDS)],
    Median = fun(V) -> median([proplists:get_value(V, R) || R <- Rounds]) end,
    Untraced = Median(untraced),
    io:format("~nCost of following: ~b ~s, ~b rounds, median~n", [Calls, What, ?ROUNDS]),
    io:format("~-16s ~12s ~12s ~12s~n", ["variant", "median ms", "us/call", "x untraced"]),
    [io:format("~-16s ~12.1f ~12.2f ~12.2f~n",
               [V, Median(V) / 1000, Median(V) / Calls, Median(V) / Untraced])
     || V <- Variants],
    io:format("~nfollow / apply: ~.2f (what following adds to a traced call: ~s)~n",
              [Median(apply_follow) / Median(apply), Why]).

run(untraced, Kind, To, Calls) ->
    loop(Kind, To, Calls);
run(apply, Kind, To, Calls) ->
    {ok, Us} = eflambe:apply({?MODULE, loop, [Kind, To, Calls]},
                             [{return, value}, {output_directory, "/tmp"}]),
    Us;
run(apply_follow, Kind, To, Calls) ->
    {ok, Us} = eflambe:apply({?MODULE, loop, [Kind, To, Calls]},
                             [{return, value}, {follow, true}, {output_directory, "/tmp"}]),
    Us.

%% The client: microseconds for N calls.
loop(Kind, To, N) ->
    T0 = erlang:monotonic_time(microsecond),
    calls(Kind, To, N),
    erlang:monotonic_time(microsecond) - T0.

calls(_Kind, _To, 0) ->
    ok;
calls(gen_server, Server, N) ->
    pong = gen_server:call(Server, ping),
    calls(gen_server, Server, N - 1);
calls(plain, Server, N) ->
    Server ! {self(), ping},
    receive {Server, pong} -> ok end,
    calls(plain, Server, N - 1);
calls(erpc, Node, N) ->
    Node = erpc:call(Node, erlang, node, [], 5000),
    calls(erpc, Node, N - 1).

median(L) ->
    lists:nth((length(L) + 1) div 2, lists:sort(L)).

plain() ->
    receive
        {From, ping} -> From ! {self(), pong}, plain();
        stop -> ok
    end.

init([]) -> {ok, []}.
handle_call(ping, _From, S) -> {reply, pong, S}.
handle_cast(_, S) -> {noreply, S}.
