%% {nodes, Nodes}: a capture and a sample over a cluster of local nodes
%% started by the suite (peer), this node among them.
-module(eflambe_cluster_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [capture_where_the_calls_are, sample_in_proportion, node_without_eflambe, node_killed_mid_run,
     formats_and_labels, archives_per_node, bad_options].

init_per_suite(Config) ->
    Where = eflambe_test_util:distributed("eflambe_cl_"),
    Paths = eflambe_test_util:code_paths([eflambe, eflambe_workload, ?MODULE]),
    Start = fun(Args) -> peer:start(Where#{name => peer:random_name(), args => Args}) end,
    {ok, PA, A} = Start(Paths),
    {ok, PB, B} = Start(Paths),
    {ok, PBare, Bare} = Start([]),
    [{peers, [PA, PB, PBare]}, {a, A}, {b, B}, {bare, Bare}, {start, Start}, {paths, Paths}
     | Config].

end_per_suite(Config) ->
    [catch peer:stop(P) || P <- ?config(peers, Config)],
    ok.

end_per_testcase(_Case, Config) ->
    [eflambe_test_util:wait_until(
       fun() -> erpc:call(N, eflambe_tracer, running_session, []) =:= undefined end)
     || N <- [node(), ?config(a, Config), ?config(b, Config)]],
    ok.

%% Busy processes on a node, each running fib in a loop, until stopped.
busy(Node, K) ->
    [erpc:call(Node, erlang, spawn, [?MODULE, loop, []]) || _ <- lists:seq(1, K)].

loop() ->
    _ = ?W:fib(15),
    receive stop -> ok after 0 -> loop() end.

stop_all(Pids) ->
    [P ! stop || P <- Pids].

root_totals(Lines) ->
    lists:foldl(fun({[Root | _], N}, M) -> maps:update_with(Root, fun(X) -> X + N end, N, M) end,
                #{}, Lines).

%% ---- cases ------------------------------------------------------------

%% Armed on three nodes, called on one: the three calls of that node, each
%% under that node's name, then its process, then the target.
capture_where_the_calls_are(Config) ->
    A = ?config(a, Config),
    B = ?config(b, Config),
    Self = self(),
    _ = erpc:call(A, erlang, spawn, [fun() ->
                                            armed(500),
                                            [?W:two(12) || _ <- [1, 2, 3]],
                                            Self ! called
                                    end]),
    {ok, Results, Failed} = eflambe:capture({?W, two, 1}, 3, [{nodes, [node(), A, B]},
                                                              {return, flamegraph},
                                                              {timeout, 30000}]),
    receive called -> ok after 30000 -> ct:fail(not_called) end,
    ?assertEqual([], Failed),
    ?assertEqual(3, length(Results)),
    Name = atom_to_binary(A),
    [?assertMatch([{[Name, <<"<", _/binary>>, <<"eflambe_workload:two/1">> | _], _} | _],
                  eflambe_test_util:parse(R))
     || R <- Results].

%% The target's pattern is in place on this node (run there by erpc).
armed(0) ->
    ok;
armed(Tries) ->
    case erlang:trace_info({?W, two, 1}, meta) of
        {meta, {_, _}} -> ok;
        _ -> timer:sleep(20), armed(Tries - 1)
    end.

%% 1, 2 and 3 busy processes on three nodes: each node's time under its
%% own root, in those proportions (each process sampled at each tick,
%% running or waiting for a core).
sample_in_proportion(Config) ->
    A = ?config(a, Config),
    B = ?config(b, Config),
    Busy = busy(node(), 1) ++ busy(A, 2) ++ busy(B, 3),
    try
        {ok, Folded, []} = eflambe:sample([{nodes, [node(), A, B]}, {duration, 1500},
                                           {return, flamegraph}]),
        %% (A process waiting for a core is sampled where it was
        %% preempted: in fib, or between two of its calls.)
        Lines = [L || {Frames, _} = L <- eflambe_test_util:parse(Folded),
                      lists:member(<<"eflambe_cluster_SUITE:loop/0">>, Frames)],
        Totals = root_totals(Lines),
        ct:pal("per node: ~p", [Totals]),
        [One, Two, Three] = [maps:get(atom_to_binary(N), Totals, 0) || N <- [node(), A, B]],
        ?assert(One > 0),
        ?assert(abs(Two / One - 2) =< 0.5),
        ?assert(abs(Three / One - 3) =< 0.75)
    after
        stop_all(Busy)
    end.

%% A node without eflambe is named, with why; the others' profile comes.
node_without_eflambe(Config) ->
    A = ?config(a, Config),
    Bare = ?config(bare, Config),
    Busy = busy(A, 1),
    try
        {ok, Folded, Failed} = eflambe:sample([{nodes, [A, Bare]}, {duration, 300},
                                               {return, flamegraph}]),
        ?assertMatch([{Bare, {not_loaded_on_node, Bare, _}}], Failed),
        ?assertEqual([atom_to_binary(A)],
                     lists:usort([hd(F) || {F, _} <- eflambe_test_util:parse(Folded)]))
    after
        stop_all(Busy)
    end.

%% A node that dies mid-run is named; the others' profile comes back.
node_killed_mid_run(Config) ->
    A = ?config(a, Config),
    {ok, Peer, Victim} = (?config(start, Config))(?config(paths, Config)),
    Busy = busy(A, 1) ++ busy(Victim, 1),
    try
        _ = spawn(fun() -> timer:sleep(300), peer:stop(Peer) end),
        {ok, Folded, Failed} = eflambe:sample([{nodes, [A, Victim]}, {duration, 1000},
                                               {return, flamegraph}]),
        ?assertMatch([{Victim, _}], Failed),
        ?assertEqual([atom_to_binary(A)],
                     lists:usort([hd(F) || {F, _} <- eflambe_test_util:parse(Folded)]))
    after
        stop_all(Busy)
    end.

%% The merged profile in every format (files here); pprof labels each
%% sample with its node (go tool pprof, where go is installed).
formats_and_labels(Config) ->
    A = ?config(a, Config),
    Dir = ?config(priv_dir, Config),
    Busy = busy(node(), 1) ++ busy(A, 1),
    try
        Bare = ?config(bare, Config),
        Files = [begin
                     %% connected: this node and the peers, the one without
                     %% eflambe named.
                     {ok, File, Failed} = eflambe:sample([{nodes, connected}, {duration, 300},
                                                          {output_format, F},
                                                          {output_directory, Dir}]),
                     ?assertEqual([Bare], [N || {N, _} <- Failed]),
                     ?assert(filelib:file_size(File) > 0),
                     {F, File}
                 end || F <- [svg, speedscope, perf, pprof, perf_data]],
        {ok, Svg} = file:read_file(proplists:get_value(svg, Files)),
        ?assertMatch({_, _}, binary:match(Svg, atom_to_binary(A))),
        case os:find_executable("go") of
            false ->
                ok;
            Go ->
                {0, Traces} = eflambe_test_util:run(Go, ["tool", "pprof", "-traces",
                                                         proplists:get_value(pprof, Files)]),
                [?assertMatch({_, _}, binary:match(Traces, <<"node:  ", (atom_to_binary(N))/binary>>))
                 || N <- [node(), A]]
        end
    after
        stop_all(Busy)
    end.

%% {archive, Path}: each node keeps its own, its name in the file's.
archives_per_node(Config) ->
    A = ?config(a, Config),
    Dir = ?config(priv_dir, Config),
    Path = filename:join(Dir, "cluster.eftrace"),
    Busy = busy(node(), 1) ++ busy(A, 1),
    try
        {ok, _, []} = eflambe:sample([{nodes, [node(), A]}, {duration, 200}, {archive, Path},
                                      {return, flamegraph}]),
        [begin
             File = filename:join(Dir, "cluster." ++ atom_to_list(N) ++ ".eftrace"),
             ?assertMatch({ok, _}, eflambe:replay(File, [{return, flamegraph}]))
         end || N <- [node(), A]],
        ?assertNot(filelib:is_file(Path))
    after
        stop_all(Busy)
    end.

bad_options(Config) ->
    A = ?config(a, Config),
    ?assertMatch({error, {bad_nodes, [], _}}, eflambe:sample([{nodes, []}])),
    ?assertMatch({error, {bad_nodes, [1], _}}, eflambe:sample([{nodes, [1]}])),
    ?assertEqual({error, {conflicting_options, node, nodes}},
                 eflambe:sample([{nodes, [A]}, {node, A}])),
    ?assertEqual({error, {conflicting_options, keep, nodes}},
                 eflambe:capture({?W, two, 1}, 1, [{nodes, [A]}, {keep, slowest}])),
    ?assertMatch({error, {no_node_sampled, [{'nobody@nowhere', _}]}},
                 eflambe:sample([{nodes, ['nobody@nowhere']}, {duration, 100}])).
