%% Exact stacks: a tail call replaces its caller's frame, a body call pushes
%% one. Shapes with known real stacks (checked against the VM's own stack
%% trace where it can show them), a module loaded by its first call, and a
%% property over random programs of body and tail calls.
-module(eflambe_stacks_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(S, eflambe_shapes).

all() ->
    [tail_after_body, mutual_tail_recursion, server_loop, body_recursion_depth,
     mutual_body_recursion_truth, collapse_option, exception_in_tail_chain,
     ambiguous_site, lazily_loaded_module, replay_same_stacks, random_programs].

init_per_suite(Config) ->
    {module, ?S} = code:ensure_loaded(?S),
    Config.

end_per_suite(_Config) ->
    ok.

%% ---- helpers ------------------------------------------------------------

profile(M, F, A) ->
    profile(M, F, A, []).

%% The traced run's own time: the shapes are compared by their weights, and
%% every call costs the same to trace (eflambe_time_SUITE checks the time
%% with the tracing cost taken out).
profile(M, F, A, Opts) ->
    {ok, Folded} = eflambe:apply({M, F, A}, [{return, flamegraph}, {compensate, false} | Opts]),
    stacks(Folded).

%% The stacks that end in burn/1 (where the shapes do their work).
burning(Lines) ->
    [{S, W} || {S, W} <- Lines, S =/= [], lists:last(S) =:= n("burn/1")].

%% [{Functions, Microseconds}]: the process frame and sleep/gc taken off.
stacks(Folded) ->
    [{[F || F <- Frames, not lists:member(F, [<<"gc">> | [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>]])], W}
     || {[_Pid | Frames], W} <- eflambe_test_util:parse(Folded)].

weight_of(Stack, Lines) ->
    lists:sum([W || {S, W} <- Lines, S =:= Stack]).

n(F) -> iolist_to_binary(["eflambe_shapes:", F]).

%% ---- cases --------------------------------------------------------------

%% f() -> g(), h(): h runs in f's place.
tail_after_body(_Config) ->
    Lines = profile(?S, tail_after_body, []),
    F = n("tail_after_body/0"),
    ?assert(weight_of([F, n("g/0"), n("burn/1")], Lines) > 0),
    ?assert(weight_of([n("h/0"), n("burn/1")], Lines) > 0),
    ?assertEqual([], [S || {S, _} <- Lines, lists:member(F, S), lists:member(n("h/0"), S)]),
    ?assertEqual([], [S || {S, _} <- Lines, lists:member(n("h/0"), S), hd(S) =/= n("h/0")]).

%% 100,000 mutual tail calls: never deeper than two functions.
mutual_tail_recursion(_Config) ->
    Lines = profile(?S, ping, [100000]),
    ?assert(lists:max([length(S) || {S, _} <- Lines]) =< 2),
    ?assert(lists:sum([W || {_, W} <- Lines]) > 0).

%% 1,000 messages through loop -> decode -> handle -> loop: one or two
%% frames at any time, burn/1 under handle/2 only.
server_loop(_Config) ->
    [self() ! {msg, I} || I <- lists:seq(1, 1000)],
    Lines = profile(?S, server, [1000]),
    ?assert(lists:max([length(S) || {S, _} <- Lines]) =< 2),
    ?assert(weight_of([n("handle/2"), n("burn/1")], Lines) > 0).

%% nest(20): 21 frames of nest/1 (nest(20) down to nest(0)), then burn/1.
body_recursion_depth(_Config) ->
    Lines = burning(profile(?S, nest, [20])),
    Deepest = lists:last(lists:sort([{length(S), S} || {S, _} <- Lines])),
    ?assertEqual({22, lists:duplicate(21, n("nest/1")) ++ [n("burn/1")]}, Deepest).

%% even/odd 20 deep: the stack under the leaf is the VM's own stack trace,
%% from the profiled function down.
mutual_body_recursion_truth(_Config) ->
    Old = erlang:system_flag(backtrace_depth, 64),
    try
        Lines = burning(profile(?S, even, [20])),
        Truth = get(truth),
        Real = lists:dropwhile(fun(F) -> F =/= n("even/1") end, Truth),
        ?assertEqual(21, length(Real)),
        ?assert(weight_of(Real ++ [n("burn/1")], Lines) > 0),
        ?assertEqual(22, lists:max([length(S) || {S, _} <- Lines]))
    after
        erlang:system_flag(backtrace_depth, Old)
    end.

%% {recursion, collapse}: a function calling itself is one frame.
collapse_option(_Config) ->
    Lines = burning(profile(?S, nest, [20], [{recursion, collapse}])),
    ?assert(weight_of([n("nest/1"), n("burn/1")], Lines) > 0),
    ?assert(lists:max([length(S) || {S, _} <- Lines]) =< 2).

%% A throw at the end of a tail-call chain, caught: after_catch/0 runs
%% under the catcher, whose frame is all that is left below it.
exception_in_tail_chain(_Config) ->
    Lines = profile(?S, caught_in_chain, []),
    C = n("caught_in_chain/0"),
    ?assert(weight_of([C, n("after_catch/0"), n("burn/1")], Lines) > 0),
    %% link2 tail-called link3, and link1 tail-called link2: one frame.
    ?assert(weight_of([C, n("link2/0"), n("burn/1")], Lines) > 0),
    ?assertEqual([], [S || {S, _} <- Lines, lists:member(n("link1/0"), S),
                           lists:member(n("link2/0"), S)]),
    ?assertEqual([], [S || {S, _} <- Lines, lists:member(n("after_catch/0"), S),
                           lists:member(n("link2/0"), S)]).

%% A call its caller's code makes both ways is drawn as a body call until
%% its return says; a tail call's time then moves from under the caller.
ambiguous_site(_Config) ->
    A = n("ambiguous/1"),
    Tail = burning(profile(?S, ambiguous, [tail])),
    ?assert(weight_of([A, n("sub/0"), n("burn/1")], Tail) > 0),
    ?assertEqual([], [S || {S, _} <- Tail, lists:member(n("ws/1"), S)]),
    Body = burning(profile(?S, ambiguous, [body])),
    ?assert(weight_of([A, n("ws/1"), n("sub/0"), n("burn/1")], Body) > 0),
    ?assertEqual([], [S || {S, _} <- Body, not lists:member(n("ws/1"), S)]).

%% A module's first call goes through error_handler:undefined_function/3,
%% which loads it and then calls the function in its caller's place: no
%% frame of the module sits under error_handler.
lazily_loaded_module(Config) ->
    Dir = ?config(priv_dir, Config),
    Mod = eflambe_lazy_demo,
    Src = filename:join(Dir, "eflambe_lazy_demo.erl"),
    ok = file:write_file(Src, "-module(eflambe_lazy_demo).\n-export([run/0]).\n"
                              "run() -> _ = work(30000), done.\n"
                              "work(0) -> ok;\nwork(N) -> work(N - 1).\n"),
    {ok, Mod} = compile:file(Src, [{outdir, Dir}]),
    true = code:add_patha(Dir),
    try
        false = code:is_loaded(Mod),
        {ok, Folded} = eflambe:apply({fun() -> _ = Mod:run(), ok end, []}, [{return, flamegraph}]),
        Lines = stacks(Folded),
        Under = [S || {S, _} <- Lines,
                      lists:member(<<"eflambe_lazy_demo:work/1">>, S),
                      lists:member(<<"error_handler:undefined_function/3">>, S)],
        ?assertEqual([], Under),
        ?assert(lists:any(fun({S, W}) -> W > 0 andalso lists:suffix([<<"eflambe_lazy_demo:run/0">>,
                                                                     <<"eflambe_lazy_demo:work/1">>], S)
                          end, Lines))
    after
        code:del_path(Dir),
        code:purge(Mod),
        code:delete(Mod)
    end.

%% The archive carries the site table: replay gives the same stacks.
replay_same_stacks(Config) ->
    Archive = filename:join(?config(priv_dir, Config), "shapes.eftrace"),
    {ok, Live} = eflambe:apply({?S, tail_after_body, []}, [{return, flamegraph}, {archive, Archive}]),
    {ok, Replayed} = eflambe:replay(Archive, [{return, flamegraph}]),
    ?assertEqual(Live, Replayed),
    Out = filename:join(?config(priv_dir, Config), "shapes.folded"),
    {0, _} = eflambe_test_util:run(filename:join(code:priv_dir(eflambe), "eflambe-fold"),
                                   [Archive, "-o", Out]),
    ?assertEqual({ok, Live}, file:read_file(Out)).

%% ---- random programs ------------------------------------------------------

%% Random modules of functions that call each other as body calls and as
%% tail calls (D, the depth left, bounds them); the stacks at which each
%% leaf runs must be exactly those a model of the real stack gives. A
%% function calls another one way only: where it calls it both ways, the
%% trace alone decides, which it cannot always do in mutual recursion (see
%% ambiguous_site for the case it can).
random_programs(Config) ->
    Dir = ?config(priv_dir, Config),
    true = code:add_patha(Dir),
    %% Debian's PropEr cannot report an exception (it calls
    %% erlang:get_stacktrace/0, gone in OTP 23): report it here.
    Prop = proper:forall(program(), fun(P) ->
                                            try check_program(Dir, P)
                                            catch C:R:St ->
                                                    ct:pal("program ~p: ~p:~p~n~p", [P, C, R, St]),
                                                    false
                                            end
                                    end),
    try
        ?assert(proper:quickcheck(Prop, [{numtests, 30}, {to_file, user}]))
    after
        code:del_path(Dir)
    end.

%% A program: a list of functions, each a list of body calls (the indexes
%% of their callees) and a last call, tail or none, to a function it does
%% not also body-call.
program() ->
    proper_types:bind(proper_types:integer(2, 4),
                      fun(N) ->
                              proper_types:add_constraint(proper_types:vector(N, function_body(N)),
                                                          fun(P) -> not mixed(P) end, true)
                      end, false).

function_body(N) ->
    {proper_types:resize(3, proper_types:list(proper_types:integer(0, N - 1))),
     proper_types:oneof([none, {tail, proper_types:integer(0, N - 1)}])}.

mixed(P) ->
    lists:any(fun({Body, {tail, K}}) -> lists:member(K, Body);
                 ({_, none}) -> false
              end, P).

check_program(Dir, P) ->
    Mod = list_to_atom("eflambe_prop_" ++ integer_to_list(erlang:unique_integer([positive]))),
    {ok, Mod, Bin} = compile:forms(forms(Mod, P), []),
    Beam = filename:join(Dir, atom_to_list(Mod) ++ ".beam"),
    ok = file:write_file(Beam, Bin),
    {module, Mod} = code:load_abs(filename:rootname(Beam)),
    try
        Depth = 3,
        {ok, Folded} = eflambe:apply({Mod, f0, [Depth]}, [{return, flamegraph}]),
        Name = fun(I) -> iolist_to_binary(io_lib:format("~s:f~b/1", [Mod, I])) end,
        Leaf = iolist_to_binary(io_lib:format("~s:leaf/0", [Mod])),
        Burn = <<"eflambe_shapes:burn/1">>,
        Got = lists:usort([lists:droplast(S) || {S, W} <- stacks(Folded), W > 0, length(S) >= 2,
                                                lists:nthtail(length(S) - 2, S) =:= [Leaf, Burn]]),
        Want = lists:usort([[Name(I) || I <- S] ++ [Leaf] || S <- model(P, [0], Depth)]),
        proper:whenfail(fun() -> io:format(user, "program ~p~ngot ~p~nwant ~p~n", [P, Got, Want]) end,
                        fun() -> Got =:= Want end)
    after
        code:purge(Mod),
        code:delete(Mod),
        file:delete(Beam)
    end.

%% fI(0) -> _ = leaf(), 0; fI(D) -> _ = fJ(D - 1), ..., fK(D - 1) (or D).
%% leaf/0 is a body call that burns a few hundred microseconds. What each
%% returns keeps the compiler from proving a call's result and turning the
%% last body call into a tail call (it does when a function always returns
%% the value that follows the call).
forms(Mod, P) ->
    A = erl_anno:new(1),
    Call = fun(J) -> {call, A, {atom, A, list_to_atom("f" ++ integer_to_list(J))},
                      [{op, A, '-', {var, A, 'D'}, {integer, A, 1}}]} end,
    Funs = [begin
                Name = list_to_atom("f" ++ integer_to_list(I)),
                Body = [{match, A, {var, A, '_'}, Call(J)} || J <- Calls] ++
                    [case Last of
                         none -> {var, A, 'D'};
                         {tail, K} -> Call(K)
                     end],
                {function, A, Name, 1,
                 [{clause, A, [{integer, A, 0}], [], [{match, A, {var, A, '_'}, {call, A, {atom, A, leaf}, []}},
                                                      {integer, A, 0}]},
                  {clause, A, [{var, A, 'D'}], [], Body}]}
            end || {I, {Calls, Last}} <- lists:zip(lists:seq(0, length(P) - 1), P)],
    Leaf = {function, A, leaf, 0,
            [{clause, A, [], [], [{call, A, {remote, A, {atom, A, eflambe_shapes}, {atom, A, burn}},
                                   [{integer, A, 3000}]},
                                  {call, A, {atom, A, self}, []}]}]},
    [{attribute, A, module, Mod}, {attribute, A, export, [{f0, 1}]}, Leaf | Funs].

%% The stacks (function indexes, root first) at which leaf/0 runs, from a
%% model of the real stack: a body call pushes, a tail call replaces.
model(_P, Stack, 0) ->
    [Stack];
model(P, Stack, D) ->
    {Calls, Last} = lists:nth(lists:last(Stack) + 1, P),
    Body = lists:append([model(P, Stack ++ [J], D - 1) || J <- Calls]),
    Tail = case Last of
               none -> [];
               {tail, K} -> model(P, lists:droplast(Stack) ++ [K], D - 1)
           end,
    Body ++ Tail.
