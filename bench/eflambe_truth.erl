%% Are eflambe's stacks the real stacks? Each workload runs twice: untraced,
%% while another process samples the real stacks with
%% process_info(Pid, current_stacktrace) every millisecond; and under
%% eflambe:apply. The two are compared on what a flamegraph shows:
%%   depth     the deepest stack, and the mean depth weighted by time;
%%   caller    for each function on top of a stack, how its time splits
%%             among its callers: 100% when both split it the same way;
%%   3 callers the same for the top frame and its three nearest callers.
%% Agreements are weighted by each function's share of the running time;
%% only running time counts (waiting shows as `sleep' in eflambe, and a
%% sampled process that waits is skipped). BIFs, which the real stacks do
%% not show, are taken off eflambe's stacks first. The VM's stack traces
%% keep one frame of a run of calls from the same call site (direct body
%% recursion) and at most 64 frames: both sides are compared with
%% recursion collapsed, and real depths stop at 64.
-module(eflambe_truth).

-export([main/0, main/1, compare/1, with_perf/1, repeat_for/2, perf_stacks/2, folded/1, sort_job/0, xml_job/0,
         compile_job/0]).

-define(SAMPLE_MS, 1).
-define(SAMPLE_FOR_MS, 10000).

main() ->
    main([sort, xmerl, compile]),
    [with_perf(Job) || Job <- [sort, xmerl, compile]],
    ok.

main(Jobs) ->
    io:format("Stacks against the real stacks (process_info current_stacktrace, "
              "sampled every ~b ms for ~b ms, untraced)~n~n", [?SAMPLE_MS, ?SAMPLE_FOR_MS]),
    io:format("~-10s ~8s ~5s ~5s ~6s ~6s ~6s ~6s ~15s ~15s ~15s~n",
              ["", "", "max", "", "mean", "", ">=64", "", "caller", "3 callers", "unseen caller"]),
    io:format("~-10s ~8s ~5s ~5s ~6s ~6s ~6s ~6s ~7s ~7s ~7s ~7s ~7s ~7s~n",
              ["workload", "samples", "real", "efl", "real", "efl", "real", "efl",
               "efl", "real", "efl", "real", "efl", "real"]),
    [print(Job, compare(Job)) || Job <- Jobs],
    io:format("~ncaller, 3 callers: how alike eflambe's split of each function's time among its\n"
              "callers is to half of the samples (\"efl\"), and the other half's (\"real\": what\n"
              "sampling noise alone leaves); 100% is identical. unseen caller: the share of the\n"
              "time on a function under a caller that half of the samples never saw it under.\n"
              "The samples land where a process yields (by reductions, not time), and tracing\n"
              "slows calls: both move weights, not stacks.~n"),
    ok.

print(Job, #{samples := N, real_max := RM, efl_max := EM, real_mean := RMean,
             efl_mean := EMean, real_deep := RD, efl_deep := ED, caller := {C1, B1},
             callers3 := {C3, B3}, unseen := {U1, U2}}) ->
    io:format("~-10s ~8b ~5b ~5b ~6.1f ~6.1f ~5.1f% ~5.1f% ~6.1f% ~6.1f% ~6.1f% ~6.1f% ~6.1f% ~6.1f%~n",
              [Job, N, RM, EM, RMean, EMean, 100 * RD, 100 * ED, 100 * C1, 100 * B1, 100 * C3,
               100 * B3, 100 * U1, 100 * U2]).

%% ---- with perf -------------------------------------------------------------
%% perf samples real time and, with the JIT's frame pointers (erl +JPperf
%% true), walks the real Erlang stack: no yield points, no dedup (perf keeps
%% the 127 frames nearest the top). The job runs untraced in a node of its
%% own under `perf record'.

with_perf(Job) ->
    case os:find_executable("perf") of
        false ->
            io:format("~nperf not found: no comparison with perf samples~n");
        Perf ->
            Data = filename:join(os:getenv("TMPDIR", "/tmp"), "eflambe-truth.perf"),
            Erl = filename:join([code:root_dir(), "bin", "erl"]),
            Paths = lists:append([["-pa", filename:dirname(code:which(M))]
                                  || M <- [eflambe, ?MODULE]]),
            Eval = io_lib:format("eflambe_truth:repeat_for(~s, 15000), halt().", [Job]),
            {0, _} = run(Perf, ["record", "-F", "1999", "-g", "-o", Data, Erl, "+JPperf", "true",
                                "-noshell" | Paths] ++ ["-eval", lists:flatten(Eval)]),
            {0, Script} = run(Perf, ["script", "-i", Data]),
            ok = file:delete(Data),
            Real = [{collapse(S), 1} || S <- perf_stacks(Script, Job)],
            Fun = job(Job),
            _ = Fun(),
            {ok, Folded} = eflambe:apply({Fun, []}, [{return, flamegraph}, {recursion, collapse}]),
            Efl = folded(Folded),
            {A, B} = halves(Real, [], []),
            io:format("~nWith perf instead (erl +JPperf true, perf record -F 1999 -g, 15 s; perf shows\n"
                      "at most 127 frames, so the roots of deeper stacks are not seen): ~s~n"
                      "~b samples; max depth real ~b, eflambe ~b; mean real ~.1f, eflambe ~.1f~n"
                      "caller: eflambe ~.1f%, other half ~.1f%; unseen caller: eflambe ~.1f%, "
                      "other half ~.1f%; unseen edge: eflambe ~.1f%, other half ~.1f%~n",
                      [Job, length(Real), lists:max([length(S) || {S, _} <- Real]),
                       lists:max([length(S) || {S, _} <- Efl]), mean_depth(Real), mean_depth(Efl),
                       100 * agreement(A, Efl, 2), 100 * agreement(A, B, 2), 100 * unseen(A, Efl),
                       100 * unseen(A, B), 100 * unseen_edge(A, Efl), 100 * unseen_edge(A, B)])
    end.

%% Runs the job over and over for Ms milliseconds (in the node perf runs).
repeat_for(Job, Ms) ->
    Fun = job(Job),
    _ = Fun(),
    repeat(Fun, erlang:monotonic_time(millisecond) + Ms).

%% The Erlang frames of each perf sample, root first, of the job's code.
perf_stacks(Script, Job) ->
    Mark = case Job of
               compile -> <<"compile:">>;
               _ -> <<"eflambe_truth:">>
           end,
    [S || Block <- binary:split(Script, <<"\n\n">>, [global]),
          S <- [perf_stack(Block)], S =/= [],
          lists:any(fun(F) -> binary:match(F, Mark) =/= nomatch end, S)].

perf_stack(Block) ->
    Frames = [F || Line <- binary:split(Block, <<"\n">>, [global, trim_all]),
                   {match, [F]} <- [re:run(Line, "\\$([^ +]+/[0-9]+)\\+0x",
                                           [{capture, all_but_first, binary}])],
                   binary:match(F, [<<"global::">>, <<"erts_beamasm:">>]) =:= nomatch],
    %% perf's names quote atoms as Erlang does ('-f/1-fun-0-'); eflambe's do not.
    real_stack_names([binary:replace(F, <<"'">>, <<>>, [global]) || F <- lists:reverse(Frames)]).

%% From the job's function down: what ran the job (the node's boot, the
%% shell's evaluator, repeat/2) is not the job's.
real_stack_names(Frames) ->
    case lists:splitwith(fun(N) -> N =/= <<"eflambe_truth:repeat/2">> end, lists:reverse(Frames)) of
        {Job, [_ | _]} -> lists:reverse(Job);
        {_, []} -> real_stack(Frames)
    end.

run(Exe, Args) ->
    Port = open_port({spawn_executable, Exe}, [{args, Args}, exit_status, binary, stream]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, iolist_to_binary(lists:reverse(Acc))}
    end.

%% ---- workloads ---------------------------------------------------------

job(sort) -> fun ?MODULE:sort_job/0;
job(xmerl) -> fun ?MODULE:xml_job/0;
job(compile) -> fun ?MODULE:compile_job/0.

%% 50,000 integers sorted, under lists:map and maps:fold as application
%% code would call them.
sort_job() ->
    rand:seed(exsss, {1, 2, 3}),
    Lists = maps:from_list([{K, [rand:uniform(1000000) || _ <- lists:seq(1, 25000)]} || K <- [a, b]]),
    maps:fold(fun(_, L, Acc) -> Acc + lists:sum(sorted(L)) end, 0, Lists).

sorted(L) ->
    lists:map(fun(X) -> X + 1 end, lists:sort(L)).

%% An XML document 8 levels deep, scanned by xmerl.
xml_job() ->
    {Doc, _} = xmerl_scan:string(xml(8)),
    element(1, Doc).

xml(0) ->
    "<leaf a=\"1\" b=\"two\">text &amp; more</leaf>";
xml(N) ->
    Inner = lists:append(lists:duplicate(3, xml(N - 1))),
    lists:flatten(["<n", integer_to_list(N), " depth=\"", integer_to_list(N), "\">", Inner,
                   "</n", integer_to_list(N), ">"]).

compile_job() ->
    {ok, _, _} = compile:file(source(), [binary, return_errors]),
    ok.

source() ->
    filename:join(filename:dirname(filename:dirname(code:which(eflambe))), "src/eflambe_session.erl").

%% ---- comparison --------------------------------------------------------

compare(Job) ->
    Fun = job(Job),
    _ = Fun(),  % load the modules the job uses, in both runs
    Real = sampled(Fun),
    {ok, Folded} = eflambe:apply({Fun, []}, [{return, flamegraph}, {recursion, collapse}]),
    Efl = folded(Folded),
    {A, B} = halves(Real, [], []),
    #{samples => length(Real),
      real_max => lists:max([length(S) || {S, _} <- Real]),
      efl_max => lists:max([length(S) || {S, _} <- Efl]),
      real_mean => mean_depth(Real), efl_mean => mean_depth(Efl),
      real_deep => deep_share(Real), efl_deep => deep_share(Efl),
      caller => {agreement(A, Efl, 2), agreement(A, B, 2)},
      unseen => {unseen(A, Efl), unseen(A, B)},
      callers3 => {agreement(A, Efl, 4), agreement(A, B, 4)}}.

halves([X, Y | Rest], A, B) -> halves(Rest, [X | A], [Y | B]);
halves(_, A, B) -> {A, B}.

%% The share of time at depth 64 or more (where the VM's traces stop).
deep_share(Stacks) ->
    lists:sum([W || {S, W} <- Stacks, length(S) >= 64]) / lists:sum([W || {_, W} <- Stacks]).

%% Real stacks, root first, of the job's processes while they run.
sampled(Fun) ->
    Old = erlang:system_flag(backtrace_depth, 10000),
    Before = processes(),
    Sampler = self(),
    Worker = spawn(fun() -> repeat(Fun, erlang:monotonic_time(millisecond) + ?SAMPLE_FOR_MS) end),
    Ref = monitor(process, Worker),
    Samples = sample_loop(Ref, Before ++ [Sampler], []),
    _ = erlang:system_flag(backtrace_depth, Old),
    [{S, 1} || S <- Samples].

repeat(Fun, Until) ->
    _ = Fun(),
    case erlang:monotonic_time(millisecond) < Until of
        true -> repeat(Fun, Until);
        false -> ok
    end.

sample_loop(Ref, Skip, Acc) ->
    receive
        {'DOWN', Ref, process, _, _} -> Acc
    after ?SAMPLE_MS ->
            New = [Stack || P <- processes() -- Skip,
                            [{status, Status}, {current_stacktrace, ST}]
                                <- [erlang:process_info(P, [status, current_stacktrace])],
                            Status =:= running orelse Status =:= runnable,
                            Stack <- [real_stack(ST)], Stack =/= []],
            sample_loop(Ref, Skip, New ++ Acc)
    end.

%% From the job's function down: the frames of repeat/2 and of the process
%% start are not the job's.
real_stack([]) ->
    [];
real_stack([{_, _, _, _} | _] = ST) ->
    real_stack(collapse([name(M, F, A) || {M, F, A, _} <- lists:reverse(ST)]));
real_stack(Frames) ->
    lists:dropwhile(fun(N) -> binary:match(N, [<<"eflambe_truth:repeat">>, <<"proc_lib:">>]) =/= nomatch
                                  orelse N =:= <<"erlang:apply/2">> end, Frames).

collapse([F, F | Rest]) -> collapse([F | Rest]);
collapse([F | Rest]) -> [F | collapse(Rest)];
collapse([]) -> [].

name(M, F, A) when is_list(A) -> name(M, F, length(A));
name(M, F, A) -> iolist_to_binary(io_lib:format("~ts:~ts/~b", [M, F, A])).

%% eflambe's stacks without the process frame, the time it waited, and the
%% BIFs on top.
folded(Bin) ->
    Lines = [begin
                 [Stack, N] = string:split(L, " ", trailing),
                 {tl(binary:split(Stack, <<";">>, [global])), binary_to_integer(N)}
             end || L <- binary:split(Bin, <<"\n">>, [global, trim_all])],
    %% Time off the CPU (waiting, runnable, the OS's) is no stack's.
    Off = [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>],
    [{S, W} || {Frames, W} <- Lines, not lists:member(lists:last(Frames), Off),
               S <- [strip_bifs(spawned(Frames -- [<<"gc">>]))], S =/= [], W > 0].

%% A process spawned with a fun starts in erlang:apply/2, as the real
%% stacks (which leave it out) do.
spawned([<<"erlang:apply/2">> | Frames]) -> Frames;
spawned(Frames) -> Frames.

strip_bifs(Frames) ->
    lists:reverse(lists:dropwhile(fun is_bif/1, lists:reverse(Frames))).

is_bif(Name) ->
    [MF, A] = string:split(Name, "/", trailing),
    [M, F] = string:split(MF, ":"),
    try
        erlang:is_builtin(binary_to_atom(M), binary_to_atom(F), binary_to_integer(A))
    catch
        error:_ -> false
    end.

mean_depth(Stacks) ->
    Total = lists:sum([W || {_, W} <- Stacks]),
    lists:sum([length(S) * W || {S, W} <- Stacks]) / Total.

%% The share of the time on a top function under a caller the samples never
%% saw it under: a stack the real run does not have, or one too rare to be
%% sampled (what the other half of the samples shows).
unseen(Real, Other) ->
    Seen = maps:from_list([{lists:nthtail(max(0, length(S) - 2), S), true} || {S, _} <- Real]),
    Total = lists:sum([W || {_, W} <- Other]),
    lists:sum([W || {S, W} <- Other, not maps:is_key(lists:nthtail(max(0, length(S) - 2), S), Seen)])
        / Total.

%% The share of the time on stacks with a (caller, callee) edge anywhere in
%% them that no real stack has: a stack the real run cannot have had.
%% Unlike the split of time among callers, it does not depend on weights.
unseen_edge(Real, Other) ->
    Seen = maps:from_list([{E, true} || {S, _} <- Real, E <- edges(S)]),
    Total = lists:sum([W || {_, W} <- Other]),
    lists:sum([W || {S, W} <- Other, lists:any(fun(E) -> not maps:is_key(E, Seen) end, edges(S))])
        / Total.

edges([A, B | Rest]) -> [{A, B} | edges([B | Rest])];
edges(_) -> [].

%% 1 - the weighted total variation distance between the two sides'
%% distributions of the last K frames, per top function.
agreement(Real, Efl, K) ->
    R = suffixes(Real, K),
    E = suffixes(Efl, K),
    Leaves = lists:usort(maps:keys(R) ++ maps:keys(E)),
    RTotal = total(R),
    ETotal = total(E),
    lists:sum([begin
                   RD = maps:get(Leaf, R, #{}),
                   ED = maps:get(Leaf, E, #{}),
                   Share = (sum(RD) / RTotal + sum(ED) / ETotal) / 2,
                   Share * (1 - tvd(RD, ED))
               end || Leaf <- Leaves]).

suffixes(Stacks, K) ->
    lists:foldl(fun({S, W}, Acc) ->
                        Leaf = lists:last(S),
                        Suffix = lists:nthtail(max(0, length(S) - K), S),
                        maps:update_with(Leaf, fun(D) -> maps:update_with(Suffix, fun(X) -> X + W end, W, D) end,
                                         #{Suffix => W}, Acc)
                end, #{}, Stacks).

total(M) -> lists:sum([sum(D) || D <- maps:values(M)]).
sum(D) -> lists:sum(maps:values(D)).

tvd(A, B) ->
    SA = max(1, sum(A)),
    SB = max(1, sum(B)),
    case sum(A) =:= 0 orelse sum(B) =:= 0 of
        true -> 1.0;
        false -> lists:sum([abs(maps:get(K, A, 0) / SA - maps:get(K, B, 0) / SB)
                            || K <- lists:usort(maps:keys(A) ++ maps:keys(B))]) / 2
    end.
