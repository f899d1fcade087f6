%% @private
%% {follow, true | [Name | Pid]}: follows the work a profiled call asks of
%% other processes with gen_server, gen_statem and local erpc calls and
%% plain requests, and grafts it under the caller's waiting frame.
%%
%% The profiled process carries a sequential trace token (a label; for
%% plain messages also the receive flag, with which the node's sequential
%% tracer, this run's NIF tracer state, sees them taken). Every message it sends
%% carries it, and a process that receives such a message holds it until it
%% takes a message without one: the token marks the processes working for
%% the profiled call, transitively, and only while they do. (apply's caller
%% gets it back at each call it makes, if a message without one took it.)
%% Local trace patterns whose match specs test it ({is_seq_trace}) then,
%% in the traced processes only (the caller, the servers working for it:
%% the rest of the node runs no match spec), and tell the step in the call
%% event ({message, Step}):
%%   - at gen:do_call/4, in a tokened caller, switch call tracing on in the
%%     server (the match spec's trace action: no Erlang round trip) and
%%     record the call (the folder shows the wait as [queued]);
%%   - where a server takes a request up (gen_server:handle_msg/6,7,
%%     gen_statem:loop_event/5), record whose request it is;
%%   - where it is back in its loop (gen_server:loop/7,
%%     gen_statem:loop_receive/3), record that it is done.
%% erpc's steps are meta patterns (its spawned process is not traced yet
%% where it begins). A local erpc:call with a timeout runs in a process spawned for it: the
%% call is recorded at erpc:call/5, its spawn_request notes the request's
%% reference (the NIF keeps it), and the spawned process, at
%% erpc:execute_call/4, switches its own tracing on and names its caller by
%% that reference; the function's exit ends its work. (Without a timeout,
%% erpc runs the function in the caller: nothing to follow.)
%% A plain request (a tokened message naming its sender): see
%% arm_messages/4.
%% Another client's request carries no token: the server's work for it is
%% recorded but grafted nowhere.
-module(eflambe_follow).

-export([check/1, check_tokens/1, arm/4, disarm/0, clear_tokens/0, mark/1, unmark/1, capture_spec/2, flags/1]).

-define(LABEL, 16#EF1A).
-define(CALL, {gen, do_call, 4}).
-define(TAKES, [{gen_server, handle_msg, 6}, {gen_server, handle_msg, 7},
                {gen_statem, loop_event, 5}]).
-define(ENDS, [{gen_server, loop, 7}, {gen_statem, loop_receive, 3}]).
-define(ERPC_CALL, {erpc, call, 5}).
-define(ERPC_SPAWN, {erlang, spawn_request, 5}).
-define(ERPC_RUN, {erpc, execute_call, 4}).
%% The token's receive flag: the node's sequential tracer sees the takes
%% of the messages the token travels with, on for plain messages only.
-define(TAKES_SEEN, {set_seq_token, 'receive', true}).
-define(TAKES_UNSEEN, {set_seq_token, 'receive', false}).
%% Names and pids a list may give: each is a clause of the guards tried at
%% every send of a followed process (and far more make the match spec
%% beyond erts' limits).
-define(LIST_MAX, 256).

-type follow() :: false | true | [atom() | pid()].
-export_type([follow/0]).

%% The option's value: true, or the processes (names or local pids) to
%% follow, and nobody else may be using sequential tracing (a token of
%% ours would overwrite theirs as messages carry it).
-spec check(term()) -> {ok, follow()} | {error, term()}.
check(false) ->
    {ok, false};
check(Follow) when Follow =:= true; is_list(Follow) ->
    case {free_seq_tracer(), own_token()} of
        {true, true} when Follow =:= true -> {ok, true};
        {true, true} -> check_list(Follow);
        {true, false} -> {error, {follow, {seq_trace_in_use, self()}}};
        {false, _} -> {error, {follow, {seq_trace_in_use, seq_trace:get_system_tracer()}}}
    end;
check(Other) ->
    {error, {bad_follow, Other, {expected, 'true | false | [Name | Pid]'}}}.

%% No sequential tracer, or an earlier run's (a run's end removes it: one
%% the node's halt of a guard left).
-dialyzer({no_match, free_seq_tracer/0}).
-spec free_seq_tracer() -> boolean().
free_seq_tracer() ->
    case seq_trace:get_system_tracer() of
        false -> true;
        {eflambe_tracer, _} -> true;
        _ -> false
    end.

%% No token, or one of an earlier run's (a message of a followed process
%% carried it here after the run: harmless, with no trace flags).
-spec own_token() -> boolean().
own_token() ->
    %% (get_token(label) gives [] without a token, which OTP 25's spec
    %% leaves out.)
    lists:member(seq_trace:get_token(label), [[], {label, ?LABEL}]).

-spec check_list(list()) -> {ok, [atom() | pid()]} | {error, term()}.
check_list(List) ->
    case eflambe_options:proper_list(List) andalso
        lists:all(fun(X) -> is_atom(X) orelse (is_pid(X) andalso node(X) =:= node()) end, List) of
        true when length(List) =< ?LIST_MAX ->
            {ok, List};
        true ->
            {error, {bad_follow, {length, length(List)}, {expected, {at_most, ?LIST_MAX}}}};
        false ->
            {error, {bad_follow, List, {expected, 'true | false | [Name | Pid]'}}}
    end.

%% capture: the calls it takes may come from any process, whose token a
%% followed call would replace; refused while a process holds a token
%% that is not ours (someone's sequential tracing, perhaps with no system
%% tracer at the moment).
-spec check_tokens(follow()) -> ok | {error, term()}.
check_tokens(false) ->
    ok;
check_tokens(_Follow) ->
    case foreign_tokens() of
        [] -> ok;
        [Pid | _] -> {error, {follow, {seq_trace_in_use, Pid}}}
    end.

%% The processes holding a sequential trace token that is not ours.
-spec foreign_tokens() -> [pid()].
foreign_tokens() ->
    eflambe_session:processes_where(
      fun(P) ->
              case erlang:process_info(P, sequential_trace_token) of
                  {sequential_trace_token, Token} -> Token =/= [] andalso element(2, Token) =/= ?LABEL;
                  undefined -> false
              end
      end).

%% Sets the patterns a followed run needs; a name that is not registered
%% now is left out.
%% Roots: the processes that get the token back when they call (apply's
%% caller). TracedByOthers: the processes another tracer traces.
-spec arm(follow(), [pid()], eflambe_session:session(), [pid()]) -> ok.
arm(false, _Roots, _Session, _TracedByOthers) ->
    ok;
arm(Follow, Roots, #{follow := States}, TracedByOthers) ->
    %% A pattern is set on loaded code only.
    _ = [code:ensure_loaded(M) || M <- [gen, gen_server, gen_statem, erpc]],
    #{follow_call := CallState, follow_take := TakeState, server := ServerState,
      follow_spawn := SpawnState} = States,
    %% The server's tracer state says so: a capture adopts it (erts asks
    %% the tracer about it at once, on whichever thread).
    ServerFlags = [call, return_to, arity, running, garbage_collection, 'receive', send,
                   {{tracer, eflambe_tracer, ServerState}}],
    Others = left_alone(TracedByOthers),
    Only = only(Follow) ++ [{'=/=', '$1', P} || P <- names(Others)],
    arm_messages(Roots, Only, ServerFlags, maps:get(follow_seq, States)),
    Caller = fun(Head, Guards, Body) -> caller_spec(Roots, Head, Guards, Body) end,
    %% A gen call's steps: local patterns, whose match specs run in traced
    %% processes only (the caller, the servers working for it), where meta
    %% patterns ran in every process on the node; each says the step in
    %% its call event (the NIF's follow_step/3), and matches all the same
    %% when it is no step (the call is a frame). (A gen call's messages
    %% need no sequential tracer: see arm_messages/4.)
    local(?CALL, Caller(['$1', '_', '_', '_'], [{is_pid, '$1'} | Only],
                        [?TAKES_UNSEEN, {trace, '$1', [], ServerFlags},
                         {message, {{follow_call, '$1'}}}])),
    _ = [local(MFA, takes(A, Request)) || {_, _, A} = MFA <- ?TAKES,
                                          Request <- [request(MFA)]],
    _ = [local(MFA, [{'_', [{is_seq_trace}], [{message, follow_end}]}]) || MFA <- ?ENDS],
    %% erpc's process is nobody a list names.
    _ = Follow =:= true andalso
        begin
            Local = {'=:=', '$1', {node}},
            meta(?ERPC_CALL, Caller(['$1', '_', '_', '_', '$2'], [Local, {'=/=', '$2', infinity}],
                                    []), CallState),
            meta(?ERPC_SPAWN, Caller(['$1', erpc, execute_call, '_', '_'], [Local], []),
                 SpawnState),
            meta(?ERPC_RUN, [{'_', [{is_seq_trace}], [{trace, [], ServerFlags}, {exception_trace}]}],
                 TakeState)
        end,
    ok.

%% Plain messages: a message naming its sender, which a process traced
%% with `send` (flags/1) sends with the token, is a request or an answer
%% (the `send` trace pattern; the NIF tells which): a request switches
%% tracing on in its receiver and is recorded. The pattern also sets the
%% token's receive flag, which the message carries: the node's sequential
%% tracer, this run's, sees it taken, and the NIF pairs the take of a
%% request with it. (A gen call clears the flag: its steps come from meta
%% patterns, and its messages' takes would cost two sequential trace events
%% a call.) Left out, and said so, when someone else set a send pattern or
%% a sequential tracer.
-spec arm_messages([pid()], list(), list(), integer()) -> ok.
arm_messages(Roots, Only, ServerFlags, SeqState) ->
    {match_spec, Current} = erlang:trace_info(send, match_spec),
    case (Current =:= true orelse mentions(Current, eflambe_tracer)) andalso free_seq_tracer() of
        true ->
            %% To a root: an answer, or a request it is not grafted for
            %% (its flags are its own).
            ToRoot = [[{is_seq_trace}, {'=:=', '$1', R}] || R <- names(Roots)],
            To = [{is_seq_trace}, {'orelse', {is_pid, '$1'}, {is_atom, '$1'}},
                  {'=/=', '$1', {self}} | [{'=/=', '$1', R} || R <- names(Roots)] ++ Only],
            Spec = [{['$1', '$2'], Root ++ names_sender(), [?TAKES_SEEN]} || Root <- ToRoot]
                ++ [{['$1', '$2'], To ++ names_sender(),
                     [?TAKES_SEEN, {trace, '$1', [], ServerFlags}]}],
            send_pattern(Spec),
            _ = seq_trace:set_system_tracer({eflambe_tracer, SeqState}),
            ok;
        false ->
            logger:warning("eflambe: {follow, _} leaves plain messages unfollowed: the send "
                           "trace pattern (~p) or the sequential tracer (~p) is someone else's",
                           [Current, seq_trace:get_system_tracer()])
    end.

%% (OTP 25's spec of erlang:trace_pattern/3 leaves out `send`, which it
%% takes.)
-dialyzer({[no_fail_call, no_return], send_pattern/1}).
-spec send_pattern(true | list()) -> true.
send_pattern(Spec) ->
    _ = erlang:trace_pattern(send, Spec, []),
    true.

%% Guards on a message ('$2') that name its sender, so that its receiver
%% can answer: {self(), ...} or its pid second or third ({Ref, self(), ...},
%% {io_request, self(), ...}), or {{self(), Tag}, ...}. gen's calls and
%% casts are not plain (meta patterns follow those). One clause: it is
%% tried at each send of a followed process.
-spec names_sender() -> list().
names_sender() ->
    Self = fun(N, T) -> {'=:=', {element, N, T}, {self}} end,
    [{is_tuple, '$2'}, {'>=', {size, '$2'}, 2},
     {'=/=', {element, 1, '$2'}, '$gen_call'}, {'=/=', {element, 1, '$2'}, '$gen_cast'},
     {'orelse', Self(1, '$2'),
      {'orelse', Self(2, '$2'),
       {'orelse', {'andalso', {'>=', {size, '$2'}, 3}, Self(3, '$2')},
        {'andalso', {is_tuple, {element, 1, '$2'}}, {'>=', {size, {element, 1, '$2'}}, 1},
         Self(1, {element, 1, '$2'})}}}}].

%% The trace flags a followed run's own processes need besides its others.
-spec flags(follow()) -> [send].
flags(false) -> [];
flags(_Follow) -> [send].

-spec meta(mfa(), list(), integer()) -> ok.
meta(MFA, Spec, State) ->
    _ = erlang:trace_pattern(MFA, Spec, [{meta, eflambe_tracer, State}]),
    ok.

%% A local pattern whose Spec says a step; any call it does not match is
%% a frame as any other.
-spec local(mfa(), list()) -> ok.
local(MFA, Spec) ->
    _ = erlang:trace_pattern(MFA, Spec ++ [{'_', [], []}], [local]),
    ok.

%% A request a server takes up, its caller '$1': gen_server's message
%% {'$gen_call', {From, Tag}, Request}, gen_statem's event {{call, {From,
%% Tag}}, Request}.
-spec request(mfa()) -> tuple().
request({gen_statem, _, _}) -> {{call, {'$1', '_'}}, '_'};
request(_) -> {'$gen_call', {'$1', '_'}, '_'}.

%% The clauses that find a request among A arguments, in a tokened
%% server: one per position (where it is differs between functions and
%% OTP releases).
-spec takes(arity(), tuple()) -> list().
takes(A, Request) ->
    [{[case I of N -> Request; _ -> '_' end || I <- lists:seq(1, A)],
      [{is_pid, '$1'}, {is_seq_trace}], [{message, {{follow_take, '$1'}}}]}
     || N <- lists:seq(1, A)].

%% A match spec for a caller's step: in a tokened process, or in a root,
%% which gets the token back first (a message without one took it).
-spec caller_spec([pid()], list(), list(), list()) -> list().
caller_spec(Roots, Head, Guards, Body) ->
    [{Head, [{'=:=', {self}, Root} | Guards], token_actions() ++ Body} || Root <- Roots]
        ++ [{Head, [{is_seq_trace} | Guards], Body}].

%% Our token: the label (the send pattern sets the receive flag for plain
%% messages: arm_messages/4).
-spec token_actions() -> list().
token_actions() ->
    [{set_seq_token, label, ?LABEL}].

%% The guard that keeps the servers of a list ('$1': a pid, or a name a
%% message is sent to): one of them.
-spec only(true | [atom() | pid()]) -> list().
only(true) ->
    [];
only(List) ->
    Pids = [P || X <- List, P <- [case X of
                                      Name when is_atom(Name) -> whereis(Name);
                                      Pid -> Pid
                                  end], is_pid(P)],
    case names(Pids) of
        [] -> [false];
        [P | Ps] -> [lists:foldl(fun(Q, G) -> {'orelse', {'=:=', '$1', Q}, G} end,
                                 {'=:=', '$1', P}, Ps)]
    end.

%% The processes, and the names they are registered under.
-spec names([pid()]) -> [pid() | atom()].
names(Pids) ->
    Pids ++ [Name || P <- Pids, {registered_name, Name} <- [erlang:process_info(P, registered_name)]].

%% The match spec's trace action would take a process away from another
%% tracer: those (which the run looked up as it began) are left alone,
%% their work for the call staying a wait, and said so.
-spec left_alone([pid()]) -> [pid()].
left_alone(Others) ->
    _ = Others =:= [] orelse
        logger:warning("eflambe: {follow, _} leaves alone ~b process(es) traced by another "
                       "tracer (their work for the call shows as a wait): ~p",
                       [length(Others), lists:sublist(Others, 10)]),
    Others.

%% Removes the patterns of a run that followed (ours only: a meta pattern
%% someone else set on these functions stays). A pattern whose tracer is
%% [] is ours too, or no one's: erts drops a meta pattern's tracer when it
%% answers `remove' (a run that ended early). Then the tokens of the run,
%% which processes that worked for it keep until they take a message
%% without one, are cleared, unless someone else's are about.
%% (OTP 25's spec of erlang:trace_info/2 leaves out meta tracer modules.)
-dialyzer({no_match, disarm/0}).
-spec disarm() -> ok.
disarm() ->
    _ = [erlang:trace_pattern(MFA, false, [meta])
         || MFA <- [?CALL, ?ERPC_CALL, ?ERPC_SPAWN, ?ERPC_RUN | ?TAKES ++ ?ENDS],
            case erlang:trace_info(MFA, meta) of
                {meta, {eflambe_tracer, _}} -> true;
                {meta, []} -> true;
                _ -> false
            end],
    Ours = case seq_trace:get_system_tracer() of
               {eflambe_tracer, _} -> seq_trace:set_system_tracer(false), true;
               _ -> false
           end,
    {match_spec, Send} = erlang:trace_info(send, match_spec),
    _ = mentions(Send, eflambe_tracer) andalso send_pattern(true),
    _ = Ours andalso clear_tokens(),
    ok.

%% Our tokens, with the receive flag a plain request set, would make a
%% system tracer installed later see their messages: every token on the
%% node is cleared (seq_trace:reset_trace/0, which takes those of queued
%% messages too) when all are ours. (Between the look and the reset, a
%% token someone sets would go too: a window of a few milliseconds.)
-spec clear_tokens() -> boolean().
clear_tokens() ->
    case foreign_tokens() of
        [] -> seq_trace:reset_trace();
        _ -> false
    end.

%% Does the term hold the atom (our send pattern names our tracer)?
-spec mentions(term(), atom()) -> boolean().
mentions(A, A) -> true;
mentions(T, A) when is_tuple(T) -> mentions(tuple_to_list(T), A);
mentions([H | T], A) -> mentions(H, A) orelse mentions(T, A);
mentions(_, _) -> false.

%% In the profiled process, around the profiled call: carries the token.
%% Returns what to give unmark/1 afterwards.
-spec mark(follow()) -> term().
mark(false) ->
    none;
mark(_Follow) ->
    Old = case own_token() of
              true -> [];
              false -> seq_trace:get_token()
          end,
    _ = [seq_trace:set_token(Component, Value) || {set_seq_token, Component, Value} <- token_actions()],
    {token, Old}.

%% capture: the target's match spec, with Actions: it gives the caller
%% the token as the call begins, unless it has one (ours, from an earlier
%% call; someone else's is refused at the start, check_tokens/1, and never
%% replaced). It keeps it until it takes a message without one (a server
%% whose handle_call is captured: its next request), or the run's end
%% clears it; the calls it makes outside a captured call are not followed
%% (the tracer ignores them).
-spec capture_spec(follow(), list()) -> list().
capture_spec(false, Actions) ->
    [{'_', [], Actions}];
capture_spec(_Follow, Actions) ->
    [{'_', [{is_seq_trace}], Actions}, {'_', [], Actions ++ token_actions()}].

-spec unmark(term()) -> ok.
unmark(none) ->
    ok;
unmark({token, Old}) ->
    _ = seq_trace:set_token(Old),
    ok.
