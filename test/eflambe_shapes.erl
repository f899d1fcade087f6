%% Call shapes whose real stacks are known, for eflambe_stacks_SUITE. Work
%% is done in burn/1 (a tail-recursive loop: one frame), so each shape's
%% stacks carry time. `truth/0' puts the process's real stack, as the VM
%% sees it, in the process dictionary.
-module(eflambe_shapes).

-export([tail_after_body/0, ping/1, server/1, nest/1, even/1, caught_in_chain/0, truth/0,
         burn/1, ambiguous/1]).

burn(0) -> ok;
burn(N) -> burn(N - 1).

%% g/0 is a body call (f/0 goes on after it), h/0 a tail call: while h/0
%% runs, the real stack is caller;h, not caller;f;h.
tail_after_body() ->
    _ = g(),
    h().

g() ->
    burn(20000),
    done.

h() ->
    burn(20000),
    done.

%% Mutual tail recursion: two frames at most, however long it goes.
ping(0) -> burn(1000);
ping(N) -> pong(N - 1).

pong(0) -> burn(1000);
pong(N) -> ping(N - 1).

%% A server loop of three functions that tail-call each other, as
%% gen_server's loop/decode_msg/handle_msg do: it never grows.
server(0) ->
    done;
server(N) ->
    receive
        Msg -> decode(Msg, N)
    after 0 -> server(N - 1)
    end.

decode(Msg, N) -> handle({decoded, Msg}, N).

handle(_Decoded, N) ->
    burn(100),
    server(N - 1).

%% Direct body recursion N deep: N frames of nest/1.
nest(0) ->
    truth(),
    burn(20000),
    0;
nest(N) ->
    1 + nest(N - 1).

%% Mutual body recursion: even/1 and odd/1 alternate, N frames.
even(0) ->
    truth(),
    burn(20000),
    0;
even(N) ->
    1 + odd(N - 1).

odd(0) ->
    truth(),
    burn(20000),
    0;
odd(N) ->
    1 + even(N - 1).

%% An exception raised at the end of a chain of tail calls, caught: after
%% the catch, the stack is the catcher's again.
caught_in_chain() ->
    R = try link1() catch throw:{deep, X} -> X end,
    _ = after_catch(),
    R.

link1() -> link2().

link2() ->
    burn(5000),
    link3().

link3() -> throw({deep, 3}).

after_catch() ->
    burn(20000),
    caught.

%% The VM's view of the stack here, root first, without this function.
truth() ->
    {current_stacktrace, [_ | Stack]} = process_info(self(), current_stacktrace),
    put(truth, [iolist_to_binary(io_lib:format("~s:~s/~b", [M, F, A])) || {M, F, A, _} <- lists:reverse(Stack)]).

%% ws/1 calls sub/0 both ways (a tail call in one clause, a body call in the
%% other), so its code cannot say which call a trace shows: the return of
%% sub/0 tells (to ws/1: a body call; past it: a tail call).
ambiguous(Mode) ->
    _ = ws(Mode),
    Mode.

ws(tail) -> sub();
ws(body) -> _ = sub(), body.

sub() ->
    burn(20000),
    sub_done.
