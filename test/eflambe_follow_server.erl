%% Servers for eflambe_follow_SUITE: a gen_server whose calls do known work
%% (light: N rounds, heavy: 3N), optionally by asking the next server in a
%% chain; a gen_statem that does the same; and clients.
-module(eflambe_follow_server).
-behaviour(gen_server).

-export([start/1, stop/1, init/1, handle_call/3, handle_cast/2, handle_info/2]).
-export([client/2, client_catching/3, other_client_loop/2]).
-export([erpc_client/2, erpc_work/1, erpc_then_call/2]).
-export([plain_start/0, plain_loop/0, plain_ask/2, plain_note/2, plain_other_loop/2]).
-export([statem_start/0, callback_mode/0, ready/3, statem_client/2]).

start(Next) ->
    gen_server:start(?MODULE, Next, []).

stop(Pid) ->
    gen_server:stop(Pid).

init(statem) ->
    {ok, ready, none};
init(Next) ->
    {ok, Next}.

handle_call({work, N}, _From, none = S) ->
    R = light(N) + heavy(3 * N),
    {reply, R, S};
handle_call({work, N}, _From, Next = S) ->
    L = light(N),
    R = gen_server:call(Next, {work, N}),
    {reply, L + R, S};
handle_call({other, N}, _From, S) ->
    {reply, other(N), S};
handle_call(crash, _From, _S) ->
    _ = light(10000),
    erlang:error(crashed_on_purpose);
handle_call({stall, Ms}, _From, S) ->
    _ = light(10000),
    timer:sleep(Ms),
    {reply, late, S}.

handle_cast(_, S) ->
    {noreply, S}.

handle_info(_, S) ->
    {noreply, S}.

%% Leaves that return a number, so that they are body calls.
light(N) -> spin(N, 0) + 1.
heavy(N) -> spin(N, 0) + 1.
other(N) -> spin(N, 0) + 1.

spin(0, Acc) -> Acc;
spin(N, Acc) -> spin(N - 1, Acc bxor erlang:phash2(N)).

client(Server, N) ->
    gen_server:call(Server, {work, N}).

client_catching(Server, Request, Timeout) ->
    catch gen_server:call(Server, Request, Timeout).

%% A local erpc call with a timeout: erpc runs the function in a process
%% of its own.
erpc_client(N, Timeout) ->
    erpc:call(node(), ?MODULE, erpc_work, [N], Timeout).

erpc_work(N) ->
    light(N) + heavy(3 * N).

%% An erpc call (whose answer, a 'DOWN' message, carries no token), then a
%% gen_server call, which is followed all the same.
erpc_then_call(Server, N) ->
    _ = erpc_client(N, 5000),
    client(Server, N).

%% Another client, not profiled: keeps the server busy with other work.
other_client_loop(Server, N) ->
    receive
        stop -> ok
    after 0 ->
        _ = gen_server:call(Server, {other, N}),
        other_client_loop(Server, N)
    end.

%% ---- gen_statem ---------------------------------------------------------

statem_start() ->
    gen_statem:start(?MODULE, statem, []).

callback_mode() ->
    state_functions.

ready({call, From}, {work, N}, Data) ->
    {keep_state, Data, [{reply, From, light(N) + heavy(3 * N)}]}.

statem_client(Server, N) ->
    gen_statem:call(Server, {work, N}).

%% ---- plain messages -----------------------------------------------------

%% A server of plain messages: {From, Request} answered with {self(),
%% Answer}; a note ({note, N}: no sender, no answer) does heavy work too.
plain_start() ->
    spawn(?MODULE, plain_loop, []).

plain_loop() ->
    receive
        {From, {work, N}} ->
            From ! {self(), light(N) + heavy(3 * N)},
            plain_loop();
        {From, {other, N}} ->
            From ! {self(), other(N)},
            plain_loop();
        {note, N} ->
            _ = heavy(N),
            plain_loop();
        stop ->
            ok
    end.

plain_ask(Server, N) ->
    Server ! {self(), {work, N}},
    receive
        {Server, Answer} -> Answer
    end.

%% A note, then a sleep of the sender's own, not a wait for the server.
plain_note(Server, N) ->
    Server ! {note, N},
    timer:sleep(100).

plain_other_loop(Server, N) ->
    receive
        stop -> ok
    after 0 ->
        Server ! {self(), {other, N}},
        receive {Server, _} -> ok end,
        plain_other_loop(Server, N)
    end.

