%% {follow, ...}: the work a profiled call asks of gen_servers,
%% gen_statems and local erpc calls, grafted under the caller's waiting frame, checked for its
%% shape and its proportions, and that nothing stays armed.
-module(eflambe_follow_SUITE).
%% The profiles here are in the traced run's own time ({compensate, false}):
%% the servers' work is calls of fib, whose time with the tracing cost taken
%% out is mostly what that cost varies by (eflambe_time_SUITE), while every
%% call costs the same to trace, so proportions of the traced time are the
%% work's.

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(S, eflambe_follow_server).
-define(PLAIN_WAIT, <<"eflambe_follow_server:plain_ask/2">>).
-define(WAIT, <<"gen:do_call/4">>).

all() ->
    [server_work_under_the_wait, other_clients_not_mixed_in, chain_of_servers, statem_call,
     callee_crashes, callee_never_answers, only_listed_servers, without_follow,
     traced_by_another_tracer, captured_call_follows, server_started_in_the_call, every_format,
     bad_options, erpc_call_local, erpc_call_raises, erpc_without_timeout, erpc_then_gen_call,
     captured_erpc_call, plain_request_under_the_wait, plain_other_clients_not_mixed_in,
     plain_note_not_a_request, captured_plain_request, lazy_loading_followed,
     called_by_name, stop_while_arming, ended_early, no_token_left, captured_label_kept, long_follow_list].

init_per_testcase(_Case, Config) ->
    {ok, B} = ?S:start(none),
    {ok, A} = ?S:start(B),
    [{servers, {A, B}} | Config].

end_per_testcase(_Case, Config) ->
    {A, B} = ?config(servers, Config),
    [catch ?S:stop(P) || P <- [A, B]],
    assert_nothing_armed().

assert_nothing_armed() ->
    %% (undefined: the module is not loaded.)
    [?assert(lists:member(erlang:trace_info(MFA, meta), [{meta, false}, {meta, undefined}]))
     || MFA <- [{gen, do_call, 4}, {gen_server, handle_msg, 6}, {gen_server, loop, 7},
                {gen_statem, loop_event, 5}, {gen_statem, loop_receive, 3}, {erpc, call, 5},
                {erlang, spawn_request, 5}, {erpc, execute_call, 4}]],
    ?assertEqual([], [P || P <- processes(), erlang:trace_info(P, tracer) =/= {tracer, []},
                           erlang:trace_info(P, tracer) =/= undefined]),
    ?assertEqual({match_spec, true}, erlang:trace_info(send, match_spec)),
    ?assertEqual(false, seq_trace:get_system_tracer()),
    %% A token of the run may have come back with a message: harmless.
    ?assert(lists:member(seq_trace:get_token(label), [[], {label, 16#EF1A}])),
    ?assertEqual(undefined, eflambe_tracer:running_session()),
    %% No process keeps a token of the run: a system tracer set later
    %% would see their messages.
    ?assertEqual([], [P || P <- processes(), P =/= self(),
                           {sequential_trace_token, T} <- [process_info(P, sequential_trace_token)],
                           T =/= []]).

parse(Folded) ->
    eflambe_test_util:parse(Folded).

%% Microseconds of the stacks that pass through Frame, and of those whose
%% frames after it include Leaf.
under(Lines, Frame) ->
    [{Rest, N} || {Frames, N} <- Lines, Rest <- [after_frame(Frame, Frames)], Rest =/= none].

after_frame(_Frame, []) -> none;
after_frame(Frame, [Frame | Rest]) -> Rest;
after_frame(Frame, [_ | Rest]) -> after_frame(Frame, Rest).

total(Lines) ->
    lists:sum([N || {_, N} <- Lines]).

with(Lines, Frame) ->
    [L || {Frames, _} = L <- Lines, lists:member(Frame, Frames)].

%% The same, running only: a loaded machine preempts a leaf now and then
%% (a sleep above it), which moves wall-time proportions, not work.
on_cpu(Lines, Frame) ->
    [L || {Frames, _} = L <- with(Lines, Frame), not lists:member(lists:last(Frames), [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>])].

%% Heavy does three times light's work: measured 2.94 to 3.01 on an idle
%% machine; beside two busy loops (the OS preempting the schedulers, which
%% the VM cannot see) 1.6 to 3.7 was seen.
in_proportion(Light, Heavy) ->
    Light > 0 andalso Heavy / Light > 1.5 andalso Heavy / Light < 6.0.

pid_frame(Pid) ->
    list_to_binary(pid_to_list(Pid)).

%% Captures, following, the next call of MFA, which a process running Run
%% makes: the folded stacks and that process.
capture_one(MFA, Run) ->
    Self = self(),
    Capturer = spawn_link(fun() ->
                                  Self ! {captured, eflambe:capture(MFA, 1, [{return, flamegraph}, {compensate, false},
                                                                             {follow, true}])}
                          end),
    eflambe_test_util:wait_armed(MFA),
    Client = spawn_link(Run),
    {ok, [Folded]} = receive {captured, R} -> R after 30000 -> ct:fail(no_capture) end,
    unlink(Capturer),
    {Folded, Client}.

%% ---- cases ----------------------------------------------------------------

%% The server's work for the call (light N, heavy 3N) is under the client's
%% gen:do_call/4, below the server's process frame, in proportion; the
%% client's own sleeping there is not counted twice.
server_work_under_the_wait(Config) ->
    {_A, B} = ?config(servers, Config),
    {ok, Folded} = eflambe:apply({?S, client, [B, 300000]}, [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    Under = under(Lines, ?WAIT),
    Graft = under(Under, pid_frame(B)),
    Light = total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)),
    Heavy = total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)),
    ct:pal("light ~p us, heavy ~p us, all ~p us, under the wait ~p us", [Light, Heavy, total(Lines), total(Under)]),
    ?assert(Light > 0),
    ?assert(in_proportion(Light, Heavy)),
    %% The request handled as gen_server does it.
    ?assert(lists:any(fun({[<<"gen_server:handle_msg/6">>, <<"gen_server:try_handle_call/4">>,
                            <<"eflambe_follow_server:handle_call/3">> | _], _}) -> true;
                         (_) -> false
                      end, Graft)),
    %% The wait is the server's time, not the server's time plus a sleep.
    Sleep = total([L || {[<<"sleep">>], _} = L <- Under]),
    ?assert(Sleep < 0.1 * total(Graft)),
    %% One process in the profile: the server is part of the client's stacks.
    ?assertEqual([pid_frame(self())], lists:usort([hd(F) || {F, _} <- Lines])).

%% A second client keeps the server busy with other work meanwhile: none
%% of it is in the profile, and its requests ahead of ours show as [queued].
other_clients_not_mixed_in(Config) ->
    {_A, B} = ?config(servers, Config),
    Other = spawn_link(fun() -> ?S:other_client_loop(B, 20000) end),
    timer:sleep(20),
    {ok, Folded} = eflambe:apply({?S, client, [B, 100000]}, [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Other ! stop,
    Lines = parse(Folded),
    ?assertEqual([], with(Lines, <<"eflambe_follow_server:other/1">>)),
    Graft = under(under(Lines, ?WAIT), pid_frame(B)),
    ?assert(total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)) > 0).

%% client -> A -> B: B's work under A's under the client's.
chain_of_servers(Config) ->
    {A, B} = ?config(servers, Config),
    {ok, Folded} = eflambe:apply({?S, client, [A, 200000]}, [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    InA = under(under(Lines, ?WAIT), pid_frame(A)),
    InB = under(under(InA, ?WAIT), pid_frame(B)),
    ALight = total([L || {F, _} = L <- InA, lists:member(<<"eflambe_follow_server:light/1">>, F),
                         not lists:member(pid_frame(B), F)]),
    BLight = total(on_cpu(InB, <<"eflambe_follow_server:light/1">>)),
    BHeavy = total(on_cpu(InB, <<"eflambe_follow_server:heavy/1">>)),
    ct:pal("A light ~p, B light ~p, B heavy ~p", [ALight, BLight, BHeavy]),
    ?assert(ALight > 0 andalso BLight > 0),
    ?assert(in_proportion(BLight, BHeavy)).

statem_call(_Config) ->
    {ok, M} = ?S:statem_start(),
    try
        {ok, Folded} = eflambe:apply({?S, statem_client, [M, 200000]},
                                     [{return, flamegraph}, {compensate, false}, {follow, true}]),
        Graft = under(under(parse(Folded), <<"gen:do_call/4">>), pid_frame(M)),
        Light = total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)),
        Heavy = total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)),
        ct:pal("statem: light ~p, heavy ~p", [Light, Heavy]),
        ?assert(in_proportion(Light, Heavy))
    after
        gen_statem:stop(M)
    end.

%% The server crashes in handle_call: the call's profile has its work up
%% to the crash, and the client goes on.
callee_crashes(Config) ->
    {_A, B} = ?config(servers, Config),
    unlink(B),
    {ok, Folded} = eflambe:apply({?S, client_catching, [B, crash, 5000]},
                                 [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Graft = under(under(parse(Folded), ?WAIT), pid_frame(B)),
    ?assert(total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)) > 0).

%% The server never answers in time: the client's wait ends at its timeout
%% and the server's work after that is not grafted.
callee_never_answers(Config) ->
    {_A, B} = ?config(servers, Config),
    {ok, Folded} = eflambe:apply({?S, client_catching, [B, {stall, 300}, 50]},
                                 [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    Graft = under(under(Lines, ?WAIT), pid_frame(B)),
    ?assert(total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)) > 0),
    %% The profile ends when the client's call does, about 50 ms in, not
    %% when the server wakes up.
    ?assert(total(Lines) < 200000).

%% {follow, [B]}: the client calls A, which is not followed.
only_listed_servers(Config) ->
    {A, B} = ?config(servers, Config),
    {ok, Folded} = eflambe:apply({?S, client, [A, 50000]}, [{return, flamegraph}, {compensate, false}, {follow, [B]}]),
    Lines = parse(Folded),
    ?assertEqual([], with(Lines, pid_frame(A))),
    {ok, Folded2} = eflambe:apply({?S, client, [B, 50000]}, [{return, flamegraph}, {compensate, false}, {follow, [B]}]),
    ?assertNotEqual([], with(parse(Folded2), pid_frame(B))).

%% Without the option nothing is followed: the call is a sleep.
without_follow(Config) ->
    {_A, B} = ?config(servers, Config),
    {ok, Folded} = eflambe:apply({?S, client, [B, 50000]}, [{return, flamegraph}, {compensate, false}]),
    Lines = parse(Folded),
    ?assertEqual([], with(Lines, pid_frame(B))),
    ?assertNotEqual([], with(Lines, <<"sleep">>)).

%% A server another tracer traces is left to it: its work stays a wait,
%% and its tracer and flags are as they were.
traced_by_another_tracer(Config) ->
    {_A, B} = ?config(servers, Config),
    Tracer = spawn_link(fun() -> receive stop -> ok end end),
    erlang:trace(B, true, [send, {tracer, Tracer}]),
    try
        {ok, Folded} = eflambe:apply({?S, client, [B, 20000]}, [{return, flamegraph}, {compensate, false}, {follow, true}]),
        ?assertEqual([], with(parse(Folded), pid_frame(B))),
        ?assertEqual({tracer, Tracer}, erlang:trace_info(B, tracer)),
        ?assertEqual({flags, [send]}, erlang:trace_info(B, flags))
    after
        erlang:trace(B, false, [all]),
        Tracer ! stop
    end.

%% capture: the next call of client/2, made by another process, followed
%% into the server (A, then B).
captured_call_follows(Config) ->
    {A, B} = ?config(servers, Config),
    {Folded, Client} = capture_one({?S, client, 2}, fun() -> ?S:client(A, 100000) end),
    Lines = parse(Folded),
    ?assertEqual([pid_frame(Client)], lists:usort([hd(F) || {F, _} <- Lines])),
    InA = under(under(Lines, ?WAIT), pid_frame(A)),
    InB = under(under(InA, ?WAIT), pid_frame(B)),
    BLight = total(on_cpu(InB, <<"eflambe_follow_server:light/1">>)),
    BHeavy = total(on_cpu(InB, <<"eflambe_follow_server:heavy/1">>)),
    ct:pal("captured: A ~p us, B light ~p, heavy ~p", [total(InA), BLight, BHeavy]),
    ?assert(in_proportion(BLight, BHeavy)).

%% A server the profiled call starts is a process of the call (traced from
%% its birth): its own work (init) stays in its own stacks, and its work for
%% the call's request is grafted under the wait.
server_started_in_the_call(_Config) ->
    Self = self(),
    Work = fun() ->
                   {ok, S} = ?S:start(none),
                   Self ! {server, S},
                   R = ?S:client(S, 100000),
                   ?S:stop(S),
                   R
           end,
    {ok, Folded} = eflambe:apply(Work, [{return, flamegraph}, {compensate, false}, {follow, true}]),
    S = receive {server, P} -> P end,
    Lines = parse(Folded),
    Own = [L || {[First | _], _} = L <- Lines, First =:= pid_frame(S)],
    ?assertNotEqual([], with(Own, <<"gen_server:init_it/6">>)),
    ?assertEqual([], with(Own, <<"eflambe_follow_server:heavy/1">>)),
    Graft = under(under(Lines, ?WAIT), pid_frame(S)),
    ?assert(total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)) > 0).

%% Every writer: the server's frames, in the client's one process.
every_format(Config) ->
    {A, _B} = ?config(servers, Config),
    Dir = ?config(priv_dir, Config),
    Archive = filename:join(Dir, "follow.eftrace"),
    {ok, Folded} = eflambe:apply({?S, client, [A, 50000]},
                                 [{return, flamegraph}, {compensate, false}, {follow, true}, {archive, Archive}]),
    %% Replay gives the same stacks.
    {ok, Replayed} = eflambe:replay(Archive, [{return, flamegraph}, {compensate, false}]),
    ?assertEqual(parse(Folded), parse(Replayed)),
    {ok, Perf} = eflambe:replay(Archive, [{return, flamegraph}, {compensate, false}, {output_format, perf}]),
    Commands = lists:usort([hd(binary:split(L, <<" ">>)) || L <- binary:split(Perf, <<"\n">>, [global]),
                                                           L =/= <<>>, binary:first(L) =/= $\t]),
    ?assertEqual([pid_frame(self())], Commands),
    ?assertNotEqual(nomatch, binary:match(Perf, <<"eflambe_follow_server:heavy/1">>)),
    {ok, Json} = eflambe:replay(Archive, [{return, flamegraph}, {compensate, false}, {output_format, speedscope}]),
    ?assertEqual(1, length(binary:matches(Json, <<"\"type\":\"evented\"">>))),
    ?assertNotEqual(nomatch, binary:match(Json, <<"eflambe_follow_server:heavy/1">>)),
    {ok, Svg} = eflambe:replay(Archive, [{return, flamegraph}, {compensate, false}, {output_format, svg}]),
    ?assertNotEqual(nomatch, binary:match(Svg, <<"eflambe_follow_server:heavy/1">>)).

bad_options(_Config) ->
    ?assertMatch({error, {bad_follow, 42, _}}, eflambe:apply({lists, seq, [1, 3]}, [{follow, 42}])),
    ?assertMatch({error, {bad_follow, [a | b], _}},
                 eflambe:apply({lists, seq, [1, 3]}, [{follow, [a | b]}])),
    ?assertMatch({error, {unknown_option, {follow, true}}},
                 eflambe:sample([{follow, true}, {duration, 10}])),
    %% Someone else's sequential trace token: refused, left as it was.
    seq_trace:set_token(label, 17),
    try
        ?assertMatch({error, {follow, {seq_trace_in_use, _}}},
                     eflambe:apply({lists, seq, [1, 3]}, [{follow, true}]))
    after
        seq_trace:set_token([])
    end.

%% ---- erpc -------------------------------------------------------------------

-define(ERPC_WAIT, <<"erpc:call/5">>).

%% The work of the process erpc spawns for a local call with a timeout is
%% under the caller's erpc:call/5, below that process's frame, from its
%% birth: one process in the profile.
erpc_call_local(_Config) ->
    {ok, Folded} = eflambe:apply({?S, erpc_client, [300000, 5000]},
                                 [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    ?assertEqual([pid_frame(self())], lists:usort([hd(F) || {F, _} <- Lines])),
    [Child] = lists:usort([P || {[P, <<"erpc:execute_call/4">> | _], _} <- under(Lines, ?ERPC_WAIT)]),
    Graft = under(under(Lines, ?ERPC_WAIT), Child),
    Light = total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)),
    Heavy = total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)),
    ct:pal("erpc: light ~p us, heavy ~p us, all ~p us", [Light, Heavy, total(Lines)]),
    ?assert(in_proportion(Light, Heavy)),
    %% Its work ends with the function (its exit), not at the caller's
    %% next step: the caller's sleep there is short.
    Sleep = total([L || {[<<"sleep">>], _} = L <- under(Lines, ?ERPC_WAIT)]),
    ?assert(Sleep < 0.1 * total(Graft)).

%% The function raises: erpc:call raises in the caller; the work done is
%% grafted all the same.
erpc_call_raises(_Config) ->
    Work = fun() ->
                   {'EXIT', _} = (catch erpc:call(node(), ?S, erpc_work, [not_a_number], 5000)),
                   ?S:erpc_client(50000, 5000)
           end,
    {ok, Folded} = eflambe:apply(Work, [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    ?assertEqual([pid_frame(self())], lists:usort([hd(F) || {F, _} <- Lines])),
    ?assert(total(on_cpu(under(Lines, ?ERPC_WAIT), <<"eflambe_follow_server:heavy/1">>)) > 0).

%% Without a timeout erpc runs the function in the caller: its work is the
%% caller's own, under erpc:call/5.
erpc_without_timeout(_Config) ->
    {ok, Folded} = eflambe:apply({?S, erpc_client, [100000, infinity]},
                                 [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    ?assertEqual([pid_frame(self())], lists:usort([hd(F) || {F, _} <- Lines])),
    ?assertNotEqual([], [L || {[_, <<"erpc:call/5">>, <<"erpc:execute_call/3">> | _], _} = L <- Lines,
                              lists:member(<<"eflambe_follow_server:heavy/1">>, element(1, L))]).

%% erpc's answer is a 'DOWN' message, which carries no sequential trace
%% token and so takes the caller's: the caller gets it back at its next
%% call, and the gen_server call after the erpc call is followed too.
erpc_then_gen_call(Config) ->
    {_A, B} = ?config(servers, Config),
    {ok, Folded} = eflambe:apply({?S, erpc_then_call, [B, 100000]},
                                 [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    InErpc = under(Lines, ?ERPC_WAIT),
    InB = under(under(Lines, ?WAIT), pid_frame(B)),
    ?assert(total(on_cpu(InErpc, <<"eflambe_follow_server:heavy/1">>)) > 0),
    ?assert(total(on_cpu(InB, <<"eflambe_follow_server:heavy/1">>)) > 0).

%% capture: the erpc call of a captured call, made by another process.
captured_erpc_call(_Config) ->
    {Folded, Client} = capture_one({?S, erpc_client, 2},
                                   fun() -> ?S:erpc_client(200000, 5000) end),
    Lines = parse(Folded),
    ?assertEqual([pid_frame(Client)], lists:usort([hd(F) || {F, _} <- Lines])),
    Graft = under(Lines, ?ERPC_WAIT),
    Light = total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)),
    Heavy = total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)),
    ct:pal("captured erpc: light ~p us, heavy ~p us", [Light, Heavy]),
    ?assert(in_proportion(Light, Heavy)).

%% ---- plain messages -----------------------------------------------------------

%% {self(), Request} to a process that answers it: the receiver's work,
%% from its take of the request to its answer, is under the sender's
%% waiting frame, in proportion, in one process.
plain_request_under_the_wait(_Config) ->
    P = ?S:plain_start(),
    try
        {ok, Folded} = eflambe:apply({?S, plain_ask, [P, 300000]},
                                     [{return, flamegraph}, {compensate, false}, {follow, true}]),
        Lines = parse(Folded),
        ?assertEqual([pid_frame(self())], lists:usort([hd(F) || {F, _} <- Lines])),
        Graft = under(under(Lines, ?PLAIN_WAIT), pid_frame(P)),
        Light = total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)),
        Heavy = total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)),
        ct:pal("plain: light ~p us, heavy ~p us, all ~p us", [Light, Heavy, total(Lines)]),
        ?assert(in_proportion(Light, Heavy)),
        Sleep = total([L || {[<<"sleep">>], _} = L <- under(Lines, ?PLAIN_WAIT)]),
        ?assert(Sleep < 0.1 * total(Graft))
    after
        P ! stop
    end.

%% Another client keeps the server busy meanwhile: none of its work is in
%% the profile.
plain_other_clients_not_mixed_in(_Config) ->
    P = ?S:plain_start(),
    Other = spawn_link(fun() -> ?S:plain_other_loop(P, 20000) end),
    try
        timer:sleep(20),
        {ok, Folded} = eflambe:apply({?S, plain_ask, [P, 100000]},
                                     [{return, flamegraph}, {compensate, false}, {follow, true}]),
        Lines = parse(Folded),
        ?assertEqual([], with(Lines, <<"eflambe_follow_server:other/1">>)),
        Graft = under(under(Lines, ?PLAIN_WAIT), pid_frame(P)),
        ?assert(total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)) > 0)
    after
        Other ! stop,
        P ! stop
    end.

%% A message that does not name its sender asks for no answer: the
%% receiver's work for it is not the sender's (which sleeps on its own).
plain_note_not_a_request(_Config) ->
    P = ?S:plain_start(),
    try
        {ok, Folded} = eflambe:apply({?S, plain_note, [P, 300000]},
                                     [{return, flamegraph}, {compensate, false}, {follow, true}]),
        Lines = parse(Folded),
        ?assertEqual([], with(Lines, <<"eflambe_follow_server:heavy/1">>)),
        ?assertNotEqual([], with(Lines, <<"timer:sleep/1">>))
    after
        P ! stop
    end.

%% capture: the plain request of a captured call, made by another process.
captured_plain_request(_Config) ->
    P = ?S:plain_start(),
    try
        {Folded, Client} = capture_one({?S, plain_ask, 2}, fun() -> ?S:plain_ask(P, 200000) end),
        Lines = parse(Folded),
        ?assertEqual([pid_frame(Client)], lists:usort([hd(F) || {F, _} <- Lines])),
        Graft = under(under(Lines, ?PLAIN_WAIT), pid_frame(P)),
        Light = total(on_cpu(Graft, <<"eflambe_follow_server:light/1">>)),
        Heavy = total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)),
        ct:pal("captured plain: light ~p us, heavy ~p us", [Light, Heavy]),
        ?assert(in_proportion(Light, Heavy))
    after
        P ! stop
    end.

%% The first call of a module not loaded yet: the caller waits in
%% code_server:call/1 while the code server (a plain request, answered
%% with a plain message) finds and reads the file, itself asking
%% erl_prim_loader: that work is under the caller's wait, most of it.
lazy_loading_followed(_Config) ->
    M = eflambe_follow_lazy,
    _ = code:purge(M),
    _ = code:delete(M),
    _ = code:purge(M),
    false = erlang:module_loaded(M),
    {ok, Folded} = eflambe:apply(fun() -> M:hello() end, [{return, flamegraph}, {compensate, false}, {follow, true}]),
    Lines = parse(Folded),
    ?assertEqual([pid_frame(self())], lists:usort([hd(F) || {F, _} <- Lines])),
    Wait = under(Lines, <<"code_server:call/1">>),
    Graft = under(Wait, pid_frame(whereis(code_server))),
    ct:pal("code_server:call/1 ~p us, the code server's work under it ~p us", [total(Wait), total(Graft)]),
    ?assertNotEqual([], with(Graft, <<"erl_prim_loader:get_file/1">>)),
    ?assert(total(Graft) > 0.8 * total(Wait)).


%% A server called by its registered name: gen:do_for_proc/2 tail-calls
%% its fun, which the code cannot tell from the function's body call of a
%% fun (via a global name); its return says so, and the server's work
%% grafted under the guess moves with the caller's time: one stack.
called_by_name(Config) ->
    {_A, B} = ?config(servers, Config),
    true = register(eflambe_follow_named, B),
    try
        {ok, Folded} = eflambe:apply({?S, client, [eflambe_follow_named, 100000]},
                                     [{return, flamegraph}, {compensate, false}, {follow, true}]),
        Lines = parse(Folded),
        %% (Its own time before the tail call is its own.)
        ?assertEqual([], [L || {F, _} = L <- under(Lines, <<"gen:do_for_proc/2">>),
                               lists:member(?WAIT, F)]),
        Graft = under(under(Lines, ?WAIT), pid_frame(B)),
        ?assert(total(on_cpu(Graft, <<"eflambe_follow_server:heavy/1">>)) > 0)
    after
        unregister(eflambe_follow_named)
    end.

%% ---- cleaning up after following ------------------------------------------

%% eflambe:stop() at any moment of a followed run's start: the run ends
%% cleanly (no guard fails), nothing stays armed, and a send tracer set
%% afterwards sees every send.
stop_while_arming(Config) ->
    {_A, B} = ?config(servers, Config),
    Self = self(),
    {_, Logged} =
        eflambe_test_util:with_warnings(
          fun() ->
                  [begin
                       %% A token that came back to this process with the last
                       %% run's result (harmless: assert_nothing_armed/0) is
                       %% dropped, not passed on to the next run's processes.
                       _ = seq_trace:set_token([]),
                       Runner = spawn(fun() ->
                                              Self ! {ran, eflambe:apply({?S, client, [B, 2000]},
                                                                         [{follow, true},
                                                                          {return, flamegraph}])}
                                      end),
                       timer:sleep(I rem 7),
                       _ = eflambe:stop(),
                       receive {ran, R} -> ?assertMatch({ok, _}, R)
                       after 30000 -> exit(Runner, kill), ct:fail(apply_hangs)
                       end,
                       assert_nothing_armed()
                   end || I <- lists:seq(1, 60)]
          end),
    ?assertEqual([], [W || W <- Logged, binary:match(W, <<"guard failed">>) =/= nomatch]),
    %% A send tracer of the user's sees its sends.
    Tracer = spawn_link(fun() -> count_sends(0) end),
    Sender = spawn_link(fun() -> receive go -> [Self ! {x, N} || N <- lists:seq(1, 100)] end end),
    1 = erlang:trace(Sender, true, [send, {tracer, Tracer}]),
    Sender ! go,
    [receive {x, N} -> ok end || N <- lists:seq(1, 100)],
    erlang:trace_delivered(Sender),
    timer:sleep(100),
    Tracer ! {count, Self},
    ?assertEqual(100, receive {sends, C} -> C end).

count_sends(N) ->
    receive
        {trace, _, send, _, _} -> count_sends(N + 1);
        {count, To} -> To ! {sends, N}
    end.

%% A followed run that ends before its call does (timeout, max_events,
%% stop()) leaves no meta pattern behind (end_per_testcase checks), the
%% call itself ending as it would.
ended_early(Config) ->
    {_A, B} = ?config(servers, Config),
    Call = fun() -> [?S:client(B, 100000) || _ <- lists:seq(1, 5)] end,
    {ok, _} = eflambe:apply(Call, [{follow, true}, {timeout, 20}, {return, flamegraph}]),
    assert_nothing_armed(),
    {ok, _} = eflambe:apply(Call, [{follow, true}, {max_events, 2000}, {return, flamegraph}]),
    assert_nothing_armed(),
    Self = self(),
    spawn_link(fun() -> Self ! {ran, eflambe:apply(Call, [{follow, true}, {return, flamegraph}])} end),
    eflambe_test_util:wait_until(fun() -> whereis(eflambe_running) =/= undefined end),
    timer:sleep(30),
    ok = eflambe:stop(),
    receive {ran, R} -> ?assertMatch({ok, _}, R) end.

%% The servers a followed run reached, and a captured process, keep no
%% token of the run (with the receive flag a plain request sets): a system
%% tracer set afterwards sees none of their messages.
no_token_left(_Config) ->
    P = ?S:plain_start(),
    try
        {ok, _} = eflambe:apply({?S, plain_ask, [P, 3000]}, [{follow, true}, {return, flamegraph}]),
        ?assertEqual({sequential_trace_token, []}, process_info(P, sequential_trace_token)),
        {_Folded, Client} = capture_one({?S, plain_ask, 2},
                                        fun() -> ?S:plain_ask(P, 3000), receive stop -> ok end end),
        ?assertEqual({sequential_trace_token, []}, process_info(Client, sequential_trace_token)),
        Self = self(),
        Seq = spawn_link(fun() -> receive stop -> ok end end),
        false = seq_trace:set_system_tracer(Seq),
        try
            ?S:plain_ask(P, 3000),
            Client ! stop,
            timer:sleep(50),
            ?assertEqual({messages, []}, process_info(Seq, messages))
        after
            seq_trace:set_system_tracer(false),
            unlink(Seq),
            exit(Seq, kill)
        end,
        _ = Self
    after
        P ! stop
    end.

%% Someone's sequential trace label on a process: a followed capture is
%% refused while it is there, and never replaces it.
captured_label_kept(_Config) ->
    Labelled = spawn_link(fun() ->
                                  seq_trace:set_token(label, 42),
                                  receive after infinity -> ok end
                          end),
    Label = fun() -> {sequential_trace_token, T} = process_info(Labelled, sequential_trace_token), T end,
    eflambe_test_util:wait_until(fun() -> Label() =/= [] end),
    ?assertEqual({error, {follow, {seq_trace_in_use, Labelled}}},
                 eflambe:capture({?S, plain_ask, 2}, 1, [{follow, true}, {timeout, 100}])),
    ?assertMatch({_, 42, _, _, _}, Label()),
    unlink(Labelled),
    exit(Labelled, kill),
    assert_nothing_armed().

%% A list of pids beyond what a match spec can test is refused, not a
%% failed run; one within is taken.
long_follow_list(Config) ->
    {_A, B} = ?config(servers, Config),
    Many = [spawn(fun() -> ok end) || _ <- lists:seq(1, 10000)],
    ?assertMatch({error, {bad_follow, {length, 10000}, _}},
                 eflambe:apply({?S, client, [B, 1000]}, [{follow, Many}])),
    {ok, Folded} = eflambe:apply({?S, client, [B, 1000]},
                                 [{follow, [B | lists:sublist(Many, 255)]}, {return, flamegraph}]),
    ?assertNotEqual([], under(under(parse(Folded), ?WAIT), pid_frame(B))).
