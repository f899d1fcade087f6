%% {node, Node}: a capture on another node of a cluster of local nodes
%% started by the suite (peer, short names; not linked to init_per_suite,
%% whose process ends before the cases run).
-module(eflambe_remote_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [capture_on_peer, results_as_local_files, nodedown, eflambe_missing, caller_dies,
     sample_on_peer, archive_on_either_side, node_dies_mid_run].

init_per_suite(Config) ->
    Where = eflambe_test_util:distributed("eflambe_ct_"),
    Paths = eflambe_test_util:code_paths([eflambe, eflambe_workload]),
    {ok, Peer, Node} = peer:start(Where#{name => peer:random_name(), args => Paths}),
    {ok, Bare, BareNode} = peer:start(Where#{name => peer:random_name()}),
    [{peer, Peer}, {node, Node}, {bare, Bare}, {bare_node, BareNode} | Config].

end_per_suite(Config) ->
    peer:stop(?config(peer, Config)),
    peer:stop(?config(bare, Config)),
    ok.

end_per_testcase(node_dies_mid_run, _Config) ->
    ok;
end_per_testcase(_Case, Config) ->
    Node = ?config(node, Config),
    eflambe_test_util:wait_until(
      fun() -> erpc:call(Node, eflambe_tracer, running_session, []) =:= undefined end),
    ?assertEqual({traced, false}, erpc:call(Node, erlang, trace_info, [{?W, two, 1}, traced])),
    ?assertEqual({meta, false}, erpc:call(Node, erlang, trace_info, [{?W, two, 1}, meta])).

%% Calls of the target on that node, once the capture is armed there (on a
%% loaded machine, arming can take longer than any fixed delay).
call_later(Node, N) ->
    erpc:call(Node, erlang, spawn, [fun() ->
                                            armed(500),
                                            [spawn(?W, two, [12 + I]) || I <- lists:seq(1, N)]
                                    end]).

armed(0) ->
    ok;
armed(Tries) ->
    case erlang:trace_info({?W, two, 1}, meta) of
        {meta, {_, _}} -> ok;
        _ -> timer:sleep(20), armed(Tries - 1)  % not loaded yet (undefined), or not armed
    end.

capture_on_peer(Config) ->
    Node = ?config(node, Config),
    call_later(Node, 2),
    {ok, [A, B]} = eflambe:capture({?W, two, 1}, 2, [{node, Node}, {return, flamegraph},
                                                     {timeout, 20000}]),
    [?assertMatch([{[_, <<"eflambe_workload:two/1">> | _], _} | _], eflambe_test_util:parse(R))
     || R <- [A, B]].

results_as_local_files(Config) ->
    Node = ?config(node, Config),
    Dir = ?config(priv_dir, Config),
    call_later(Node, 1),
    {ok, [File]} = eflambe:capture({?W, two, 1}, 1, [{node, Node}, {output_directory, Dir},
                                                     {output_format, svg}, {timeout, 20000}]),
    ?assertEqual(Dir, filename:dirname(File) ++ "/"),
    ?assertEqual(".svg", filename:extension(File)),
    {ok, Svg} = file:read_file(File),
    ?assertMatch({match, _}, re:run(Svg, <<"Flame graph of eflambe_workload:two/1">>)).

nodedown(_Config) ->
    [_, Host] = string:split(atom_to_list(node()), "@"),
    Nope = list_to_atom("nobody_here@" ++ Host),
    ?assertEqual({error, {nodedown, Nope}}, eflambe:capture({?W, two, 1}, 1, [{node, Nope}])),
    ?assertMatch({error, {bad_node, "x"}}, eflambe:capture({?W, two, 1}, 1, [{node, "x"}])).

eflambe_missing(Config) ->
    Bare = ?config(bare_node, Config),
    ?assertMatch({error, {not_loaded_on_node, Bare, _}},
                 eflambe:capture({?W, two, 1}, 1, [{node, Bare}])).

%% The caller of a remote capture dies: the run over there ends, disarmed
%% (end_per_testcase checks).
caller_dies(Config) ->
    Node = ?config(node, Config),
    Pid = spawn(fun() -> eflambe:capture({?W, two, 1}, 1, [{node, Node}]) end),
    eflambe_test_util:wait_until(
      fun() -> erpc:call(Node, erlang, trace_info, [{?W, two, 1}, meta]) =/= {meta, false} end),
    exit(Pid, kill).

%% eflambe:sample of another node: its busy process, sampled there.
sample_on_peer(Config) ->
    Node = ?config(node, Config),
    Busy = erpc:call(Node, erlang, spawn, [fun Loop() -> _ = ?W:two(15), Loop() end]),
    {ok, Folded} = eflambe:sample([{node, Node}, {duration, 300}, {return, flamegraph}]),
    erpc:call(Node, erlang, exit, [Busy, kill]),
    Lines = eflambe_test_util:parse(Folded),
    ?assert(lists:any(fun({F, _}) -> lists:member(<<"eflambe_workload:two/1">>, F) end, Lines)).

%% The archive kept over there ({archive, Path}: a path on that node), and
%% copied back here ({fetch_archive, Path}); replaying the copy here gives
%% what the run gave.
archive_on_either_side(Config) ->
    Node = ?config(node, Config),
    Dir = ?config(priv_dir, Config),
    There = filename:join(Dir, "there.eftrace"),
    Here = filename:join(Dir, "here.eftrace"),
    call_later(Node, 1),
    {ok, [Live]} = eflambe:capture({?W, two, 1}, 1, [{node, Node}, {return, flamegraph},
                                                     {archive, There}, {fetch_archive, Here},
                                                     {timeout, 20000}]),
    ?assert(erpc:call(Node, filelib, is_regular, [There])),
    ?assertEqual({ok, [Live]}, eflambe:replay(Here, [{return, flamegraph}])),
    Fetched = filename:join(Dir, "sample.eftrace"),
    {ok, Sampled} = eflambe:sample([{node, Node}, {duration, 200}, {return, flamegraph},
                                    {fetch_archive, Fetched}]),
    ?assertEqual({ok, Sampled}, eflambe:replay(Fetched, [{return, flamegraph}])),
    ?assertMatch({error, {fetch_archive, _, _}},
                 eflambe:capture({?W, two, 1}, 1, [{fetch_archive, Here}])).

%% The node going away mid-run is an error, not a raise, archive fetched
%% or not.
node_dies_mid_run(Config) ->
    Paths = lists:append([["-pa", filename:dirname(code:which(M))] || M <- [eflambe, eflambe_workload]]),
    Where = case net_kernel:longnames() of
                true -> #{host => "127.0.0.1", longnames => true};
                false -> #{}
            end,
    Here = filename:join(?config(priv_dir, Config), "never.eftrace"),
    [begin
         {ok, Peer, Node} = peer:start(Where#{name => peer:random_name(), args => Paths}),
         Self = self(),
         spawn(fun() -> Self ! {capture, eflambe:capture({?W, two, 1}, 1, [{node, Node} | Opts])} end),
         eflambe_test_util:wait_until(
           fun() -> erpc:call(Node, eflambe_tracer, running_session, []) =/= undefined end),
         peer:stop(Peer),
         receive {capture, R} -> ct:pal("~p", [R]), ?assertMatch({error, _}, R)
         after 30000 -> error(no_result)
         end
     end || Opts <- [[], [{fetch_archive, Here}]]].
