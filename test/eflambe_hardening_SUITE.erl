%% What a careless or hostile user can do, and what must come of it: a
%% clear {error, Reason}, never a raise, a leaked process, a node left
%% armed, a blocked scheduler or a clobbered file.
-module(eflambe_hardening_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("kernel/include/file.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [out_of_range_options, bad_input_never_raises, huge_timeout, killed_guard, killed_owner,
     session_freed_at_timeout, capture_race, not_regular_archives, cli_arguments,
     non_ascii_paths, default_directory_checked_first, value_kept_when_output_fails,
     full_disk, ring_sets_bounded, stale_archives_swept, cold_first_load_loses_nothing,
     links_planted_by_another_user, other_tracer_tracing_calls].

end_per_testcase(_Case, _Config) ->
    _ = eflambe:stop(),
    ok.

%% ---- helpers ------------------------------------------------------------

%% Nothing of a run is left: no session, no pattern, no flag.
assert_disarmed() ->
    eflambe_test_util:wait_until(fun() -> eflambe_tracer:running_session() =:= undefined end),
    ?assertEqual({traced, false}, erlang:trace_info({?W, fib, 1}, traced)),
    ?assertEqual({meta, false}, erlang:trace_info({?W, fib, 1}, meta)),
    ?assertEqual({traced, false}, erlang:trace_info(on_load, traced)),
    ?assertEqual([], [P || P <- processes(),
                           case erlang:trace_info(P, tracer) of
                               {tracer, {eflambe_tracer, _}} -> true;
                               _ -> false
                           end]).

fib_fun() ->
    fun() -> ?W:fib(15) end.

cli() ->
    filename:join(code:priv_dir(eflambe), "eflambe-fold").

%% ---- cases --------------------------------------------------------------

%% What the NIF cannot hold is refused by the options, not by a badarg.
out_of_range_options(_Config) ->
    Big = 1 bsl 64,
    ?assertMatch({error, {bad_max_events, Big, _}},
                 eflambe:apply({fib_fun(), []}, [{max_events, Big}])),
    ?assertMatch({error, {bad_max_bytes, Big, _}},
                 eflambe:apply({fib_fun(), []}, [{max_bytes, Big}])),
    ?assertMatch({error, {bad_every, _, _}}, eflambe:capture({?W, fib, 1}, 1, [{every, 1 bsl 32}])),
    {ok, _} = eflambe:apply({fib_fun(), []}, [{max_events, Big - 1}, {return, flamegraph}]),
    assert_disarmed().

%% Malformed arguments give {error, _}, and no process is left behind.
bad_input_never_raises(Config) ->
    NotExecutable = filename:join(?config(priv_dir, Config), "not-executable"),
    ok = file:write_file(NotExecutable, <<"#!/bin/sh\n">>),
    ok = file:change_mode(NotExecutable, 8#644),
    Before = length(processes()),
    Bad = [fun() -> eflambe:apply({?W, fib, [5 | x]}, []) end,
           fun() -> eflambe:apply({fun ?W:fib/1, [5 | x]}, []) end,
           fun() -> eflambe:apply({?W, fib, [5]}, [{return, flamegraph} | x]) end,
           fun() -> eflambe:apply({?W, fib, [5]}, [{exclude, [lists | x]}]) end,
           fun() -> eflambe:apply({?W, fib, [5]}, [{archive, "/tmp/a\0b.eftrace"}]) end,
           fun() -> eflambe:apply({?W, fib, [5]}, [{archive, <<"/tmp/a", 0, "b">>}]) end,
           fun() -> eflambe:apply({?W, fib, [5]}, [{output_directory, [$/ | x]}]) end,
           fun() -> eflambe:apply({?W, fib, [5]}, [{open, NotExecutable}]) end,
           fun() -> eflambe:replay(<<"/nonexistent/", 16#ff, 16#fe>>, []) end,
           fun() -> eflambe:replay("", []) end,
           fun() -> eflambe:sample([{pids, [self() | x]}]) end,
           fun() -> eflambe:capture({?W, fib, 1}, 1, [{timeout, 10} | x]) end],
    [begin
         Result = (lists:nth(I, Bad))(),
         ct:pal("~b: ~p", [I, Result]),
         ?assertMatch({error, _}, Result)
     end || _ <- lists:seq(1, 20), I <- lists:seq(1, length(Bad))],
    ?assertMatch({error, {open, NotExecutable, "not an executable file"}},
                 eflambe:apply({?W, fib, [5]}, [{open, NotExecutable}])),
    eflambe_test_util:wait_until(fun() -> length(processes()) =< Before + 2 end),
    assert_disarmed().

%% A receive waits at most 2^32-1 ms; a longer timeout is no error.
huge_timeout(_Config) ->
    {ok, _} = eflambe:apply({fib_fun(), []}, [{timeout, 1 bsl 40}, {return, flamegraph}]),
    Self = self(),
    spawn(fun() -> Self ! {capture, eflambe:capture({?W, fib, 1}, 1, [{timeout, 1 bsl 40}])} end),
    eflambe_test_util:wait_armed({?W, fib, 1}),
    _ = ?W:fib(10),
    receive {capture, R} -> ?assertMatch({ok, [_]}, R) after 10000 -> error(no_capture) end,
    assert_disarmed().

%% Killing apply's guard loses timeout and stop(), not the node: the call
%% finishes, and ends the run itself.
killed_guard(_Config) ->
    Fun = fun() ->
                  exit(whereis(eflambe_running), kill),
                  ?W:fib(12)
          end,
    ?assertMatch({ok, 144}, eflambe:apply({Fun, []}, [])),
    assert_disarmed(),
    %% Killed while the call waits: stop() ends the run it left.
    Self = self(),
    Waiter = fun() ->
                     exit(whereis(eflambe_running), kill),
                     Self ! killed,
                     receive go -> done end
             end,
    P = spawn(fun() -> Self ! {apply, eflambe:apply({Waiter, []}, [{return, flamegraph}])} end),
    receive killed -> ok end,
    ?assertEqual(ok, eflambe:stop()),
    assert_disarmed(),
    P ! go,
    receive {apply, R} -> ?assertMatch({error, {profile_lost, not_running, {value, done}}}, R)
    after 10000 -> error(no_result)
    end.

%% A capture's owner killed: the caller gets an error and the node is
%% disarmed.
killed_owner(_Config) ->
    Self = self(),
    spawn(fun() -> Self ! {capture, eflambe:capture({?W, fib, 1}, 1, [])} end),
    eflambe_test_util:wait_armed({?W, fib, 1}),
    exit(whereis(eflambe_running), kill),
    receive {capture, R} -> ?assertEqual({error, {capture_failed, killed}}, R)
    after 10000 -> error(no_result)
    end,
    assert_disarmed(),
    {ok, _} = eflambe:apply({fib_fun(), []}, [{return, flamegraph}]).

%% When apply's timeout stops recording, the node is free at once, though
%% the call goes on; its profile comes when it returns.
session_freed_at_timeout(_Config) ->
    Self = self(),
    Waiter = fun() -> _ = ?W:fib(12), Self ! started, receive go -> done end end,
    P = spawn(fun() ->
                      Self ! {apply, eflambe:apply({Waiter, []}, [{timeout, 100}, {return, flamegraph}])}
              end),
    receive started -> ok end,
    assert_disarmed(),
    {ok, _} = eflambe:apply({fib_fun(), []}, [{return, flamegraph}]),
    ?assertEqual({error, not_running}, eflambe:stop()),
    P ! go,
    receive
        {apply, {ok, Folded}} ->
            ?assertNotEqual(nomatch, binary:match(Folded, <<"eflambe_workload:fib/1">>))
    after 10000 -> error(no_result)
    end,
    assert_disarmed().

%% Many captures at once: one wins, every other is told already_running.
capture_race(_Config) ->
    Self = self(),
    N = 50,
    [spawn(fun() -> Self ! {capture, eflambe:capture({?W, fib, 1}, 1, [{timeout, 1000}])} end)
     || _ <- lists:seq(1, N)],
    Results = [receive {capture, R} -> R after 20000 -> error(no_result) end
               || _ <- lists:seq(1, N)],
    Others = [R || R <- Results, R =/= {error, already_running}],
    ct:pal("~p", [Others]),
    ?assertMatch([{error, _}], Others),
    ?assertNotMatch([{error, {target_already_traced, _}}], Others),
    assert_disarmed().

%% A FIFO would block whoever opens it; a directory has nothing to read.
not_regular_archives(Config) ->
    Dir = ?config(priv_dir, Config),
    Fifo = filename:join(Dir, "replay.fifo"),
    "" = os:cmd("mkfifo " ++ Fifo),
    ?assertEqual({error, {archive, Fifo, "not a regular file"}}, eflambe:replay(Fifo, [])),
    ?assertEqual({error, {archive, Dir, "is a directory"}}, eflambe:replay(Dir, [])),
    {1, FifoMsg} = eflambe_test_util:run(cli(), [Fifo]),
    ct:pal("~s", [FifoMsg]),
    {1, DirMsg} = eflambe_test_util:run(cli(), [Dir]),
    ?assertNotEqual(nomatch, binary:match(DirMsg, <<"Is a directory">>)),
    %% Nor does the tracer's own reader: asked directly, it refuses.
    ?assertMatch({error, {io_error, _}}, eflambe_tracer:archive_header(list_to_binary(Fifo))).

cli_arguments(Config) ->
    Dir = ?config(priv_dir, Config),
    Archive = "-dash.eftrace",
    {ok, _} = eflambe:apply({fib_fun(), []}, [{archive, filename:join(Dir, Archive)},
                                              {return, flamegraph}]),
    ?assertMatch({2, _}, eflambe_test_util:run(cli(), [Archive], [{cd, Dir}])),
    ?assertMatch({0, _}, eflambe_test_util:run(cli(), ["--", Archive], [{cd, Dir}])),
    {2, Msg} = eflambe_test_util:run(cli(), ["--call", "4294967297", "--", Archive], [{cd, Dir}]),
    ?assertNotEqual(nomatch, binary:match(Msg, <<"--call takes">>)),
    %% -o replaces a file the user names (perf.data with its symbols),
    %% never through a link.
    [?assertMatch({0, _}, eflambe_test_util:run(cli(), ["--format", "perf_data", "-o", "cli-again.perf.data",
                                                       "--", Archive], [{cd, Dir}]))
     || _ <- [1, 2]],
    %% (Names of this case's own: the suite's cases share the directory.)
    ok = file:make_symlink(filename:join(Dir, "cli-link-target"), filename:join(Dir, "cli-link.folded")),
    ?assertMatch({1, _}, eflambe_test_util:run(cli(), ["-o", "cli-link.folded", "--", Archive],
                                               [{cd, Dir}])),
    ?assertEqual({error, enoent}, file:read_file_info(filename:join(Dir, "cli-link-target"))).

%% Names are given to the file system in the VM's file name encoding.
non_ascii_paths(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "dir-ü€"),
    ok = file:make_dir(Dir),
    Archive = filename:join(Dir, "ü€.eftrace"),
    {ok, File} = eflambe:apply({fib_fun(), []}, [{archive, Archive}, {output_directory, Dir},
                                                 {return, filename}]),
    ?assertMatch({ok, #file_info{type = regular}}, file:read_file_info(Archive)),
    ?assertMatch({ok, #file_info{type = regular}}, file:read_file_info(File)),
    ?assertEqual(utf8, file:native_name_encoding()),
    ?assertMatch({ok, [_ | _]}, file:list_dir(unicode:characters_to_binary(Dir))),
    {ok, Replayed} = eflambe:replay(Archive, [{return, flamegraph}]),
    {ok, Replayed} = eflambe:replay(unicode:characters_to_binary(Archive), [{return, flamegraph}]),
    ?assertEqual({ok, Replayed}, file:read_file(File)).

%% With no output_directory, the current directory is checked before
%% anything runs, as a named one is.
default_directory_checked_first(_Config) ->
    {ok, Cwd} = file:get_cwd(),
    Self = self(),
    try
        ok = file:set_cwd("/proc"),
        Result = eflambe:apply({fun() -> Self ! ran end, []}, []),
        ?assertMatch({error, {output_directory, "/proc", _}}, Result)
    after
        ok = file:set_cwd(Cwd)
    end,
    receive ran -> error(it_ran) after 0 -> ok end.

%% A call that ran keeps its value when its profile cannot be written, and
%% no partial file is left.
value_kept_when_output_fails(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "vanishing"),
    ok = file:make_dir(Dir),
    Fun = fun() -> ok = file:del_dir(Dir), 42 end,
    ?assertMatch({error, {profile_lost, {write_output, _, _}, {value, 42}}},
                 eflambe:apply({Fun, []}, [{output_directory, Dir}])),
    ?assertEqual({error, enoent}, file:list_dir(Dir)),
    assert_disarmed().

%% A full disk, for the archive or the output: the call's value is kept,
%% the error says why, and no partial output file stays. Needs a small
%% tmpfs (root); skipped where one cannot be mounted.
full_disk(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "tiny"),
    ok = file:make_dir(Dir),
    case os:cmd("mount -t tmpfs -o size=128k tmpfs " ++ Dir ++ " 2>&1 && echo mounted") of
        "mounted\n" ->
            try
                full_disk(Dir, ?config(priv_dir, Config))
            after
                os:cmd("umount " ++ Dir)
            end;
        Why ->
            {skip, "cannot mount a tmpfs: " ++ Why}
    end.

full_disk(Tiny, Elsewhere) ->
    Busy = fun() -> [?W:fib(14) || _ <- lists:seq(1, 200)], done end,
    ?assertMatch({error, {profile_lost, {io_error, enospc}, {value, done}}},
                 eflambe:apply({Busy, []}, [{archive, filename:join(Tiny, "a.eftrace")},
                                            {output_directory, Elsewhere}])),
    assert_disarmed(),
    ok = file:delete(filename:join(Tiny, "a.eftrace")),
    %% Room for the probe of the directory, not for the output.
    {ok, Fd} = file:open(filename:join(Tiny, "filler"), [write, raw]),
    _ = [file:write(Fd, <<0:8192/unit:8>>) || _ <- lists:seq(1, 15)],
    ok = file:close(Fd),
    ?assertMatch({error, {profile_lost, {write_output, _, _}, {value, done}}},
                 eflambe:apply({Busy, []}, [{output_directory, Tiny}, {output_format, svg}])),
    ?assertEqual({ok, ["filler"]}, file:list_dir(Tiny)),
    assert_disarmed().

%% Ring sets only grow: runs that alternate buffer sizes do not keep
%% adding mappings.
ring_sets_bounded(_Config) ->
    Run = fun(Bytes) -> {ok, _} = eflambe:apply({fib_fun(), []}, [{buffer_size, Bytes},
                                                                {return, flamegraph}]) end,
    Run(1 bsl 21),
    Run(1 bsl 20),
    Before = vm_size_kb(),
    [Run(B) || _ <- lists:seq(1, 10), B <- [1 bsl 20, 1 bsl 21]],
    Grown = vm_size_kb() - Before,
    ct:pal("virtual memory grew by ~b kB over 20 runs", [Grown]),
    ?assert(Grown < 32 * 1024).

vm_size_kb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmSize:\\s+([0-9]+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb).

%% A node killed with -9 leaves its temporary archive; the next run
%% deletes it when its OS process is gone and it is an hour old, and
%% nothing else.
stale_archives_swept(_Config) ->
    Dir = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    Old = erlang:system_time(second) - 7200,
    Make = fun(Pid, MTime) ->
                   F = filename:join(Dir, "eflambe-" ++ Pid ++ "-0123456789abcdef.eftrace"),
                   ok = file:write_file(F, <<"x">>),
                   ok = file:write_file_info(F, #file_info{mtime = MTime}, [{time, posix}]),
                   F
           end,
    Dead = Make("999999999", Old),
    Recent = Make("999999998", erlang:system_time(second)),
    Live = Make("1", Old),
    %% As at a node's first run (later ones sweep once a minute at most).
    _ = persistent_term:erase(eflambe_last_sweep),
    {ok, _} = eflambe:apply({fib_fun(), []}, [{return, flamegraph}]),
    ?assertNot(filelib:is_file(Dead)),
    ?assert(filelib:is_file(Recent)),
    ?assert(filelib:is_file(Live)),
    [file:delete(F) || F <- [Recent, Live]].

%% A node that has not loaded xmerl yet scans an XML document: the burst of
%% first loads loses no event at the default buffer_size.
cold_first_load_loses_nothing(_Config) ->
    Paths = lists:append([["-pa", filename:dirname(code:which(M))] || M <- [eflambe, eflambe_workload]]),
    {ok, Peer, Node} = peer:start(#{name => peer:random_name(), args => Paths, connection => standard_io}),
    try
        false = peer:call(Peer, code, is_loaded, [xmerl_scan]),
        Xml = lists:flatten(["<doc>", [["<item id=\"", integer_to_list(I), "\"><name>n",
                                        integer_to_list(I), "</name></item>"]
                                       || I <- lists:seq(1, 3000)], "</doc>"]),
        {ok, Folded} = peer:call(Peer, eflambe, apply, [{xmerl_scan, string, [Xml]},
                                                         [{return, flamegraph}]], 120000),
        ?assertEqual(nomatch, binary:match(Folded, <<"[dropped">>)),
        ?assertNotEqual(nomatch, binary:match(Folded, <<"xmerl_scan:">>)),
        ct:pal("~p: ~b lines", [Node, length(binary:split(Folded, <<"\n">>, [global]))])
    after
        peer:stop(Peer)
    end.

%% A root node, and links another user (nobody) planted in a shared sticky
%% directory towards a file only root may write: eflambe writes through
%% none of them. Skipped where the node is not root or cannot switch users.
links_planted_by_another_user(Config) ->
    Setpriv = os:find_executable("setpriv"),
    case os:cmd("id -u") of
        "0\n" when Setpriv =/= false -> planted(?config(priv_dir, Config), Setpriv);
        _ -> {skip, "needs a root node and setpriv"}
    end.

planted(Priv, Setpriv) ->
    Private = filename:join(Priv, "root-only"),
    ok = file:make_dir(Private),
    ok = file:change_mode(Private, 8#700),
    Victim = filename:join(Private, "victim"),
    ok = file:write_file(Victim, <<"root's">>),
    %% Shared as /tmp is: the priv dir's parents may be closed to nobody.
    <<R:32>> = crypto:strong_rand_bytes(4),
    Shared = filename:join("/tmp", "eflambe-ct-shared-" ++ integer_to_list(R)),
    ok = file:make_dir(Shared),
    ok = file:change_mode(Shared, 8#1777),
    try
        plant(Setpriv, Priv, Victim, Shared)
    after
        os:cmd("rm -rf " ++ Shared)
    end.

plant(Setpriv, Priv, Victim, Shared) ->
    AsNobody = fun(Args) ->
                       eflambe_test_util:run(Setpriv, ["--reuid=65534", "--regid=65534",
                                                       "--clear-groups" | Args])
               end,
    Archive = filename:join(Shared, "run.eftrace"),
    Output = filename:join(Shared, "run.folded"),
    case [AsNobody(["/bin/ln", "-s", Victim, L]) || L <- [Archive, Output]] of
        [{0, _}, {0, _}] -> planted_links(Priv, Victim, Shared, Archive, Output);
        Failed -> {skip, io_lib:format("nobody cannot plant links in ~s: ~p", [Shared, Failed])}
    end.

planted_links(Priv, Victim, Shared, Archive, Output) ->
    {ok, #file_info{uid = 65534}} = file:read_link_info(Archive),
    ?assertEqual({error, {archive, Archive, "not a regular file"}},
                 eflambe:apply({fib_fun(), []}, [{archive, Archive}])),
    {ok, _} = eflambe:apply({fib_fun(), []}, [{archive, filename:join(Priv, "mine.eftrace")},
                                              {return, flamegraph}]),
    ?assertEqual({error, {output, eexist}},
                 eflambe_tracer:fold(list_to_binary(filename:join(Priv, "mine.eftrace")),
                                     brendan_gregg, false,
                                     #{max_depth => 1024, recursion => exact,
                                       output => list_to_binary(Output)})),
    %% Files eflambe creates there are its own, not through a link.
    {ok, File} = eflambe:apply({fib_fun(), []}, [{output_directory, Shared}, {return, filename}]),
    {ok, #file_info{type = regular, uid = 0}} = file:read_link_info(File),
    ?assertEqual({ok, <<"root's">>}, file:read_file(Victim)).

%% Another tracer traces some process's calls: apply is refused (its
%% all-functions pattern would flood that tracer, and its removal end the
%% tracer's own patterns), and the tracer's pattern and mailbox are as
%% they were.
other_tracer_tracing_calls(_Config) ->
    Tracer = spawn_link(fun() -> receive stop -> ok end end),
    Traced = spawn_link(fun() -> receive stop -> ok end end),
    1 = erlang:trace(Traced, true, [call, {tracer, Tracer}]),
    1 = erlang:trace_pattern({?W, fib, 1}, true, [local]),
    try
        ?assertEqual({error, {tracer_in_use, [Traced]}}, eflambe:apply({fib_fun(), []}, [])),
        ?assertEqual({traced, local}, erlang:trace_info({?W, fib, 1}, traced)),
        ?assertEqual({message_queue_len, 0}, process_info(Tracer, message_queue_len))
    after
        erlang:trace(Traced, false, [all]),
        erlang:trace_pattern({?W, fib, 1}, false, [local]),
        [begin unlink(P), exit(P, kill) end || P <- [Tracer, Traced]]
    end,
    {ok, _} = eflambe:apply({fib_fun(), []}, [{return, flamegraph}]),
    assert_disarmed().
