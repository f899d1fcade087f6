%% @private
%% {nodes, Nodes}: a capture or a sample over several nodes of the cluster
%% at once. Each node runs its own (this node's directly, the others' as
%% {node, Node} does, over Erlang distribution) and folds what it recorded;
%% only its folded stacks come back. Here they go under a root frame named
%% after their node, into the output format asked for. A node that cannot
%% run its part (down, without eflambe, refusing) is named in the result
%% with why, and the others' profile comes back all the same:
%% `{ok, Result, [{Node, Reason}]}'.
%%
%% A capture takes the first N calls wherever they come, N in all: each
%% node captures up to N and tells this process of each call captured;
%% once N are told, the others are stopped, and of each node's calls those
%% told before the N-th are kept, in the order they were told.
-module(eflambe_cluster).

-export([capture/4, sample/2]).

-spec capture([node()] | connected, term(), pos_integer(), eflambe_options:opts()) ->
          {ok, list(), [{node(), term()}]} | {error, term()}.
capture(Which, MFA, N, Opts) ->
    Nodes = nodes_of(Which),
    Part = (part(Opts))#{keep := all, progress => self()},
    Workers = start([{Node, fun() -> eflambe_capture:parsed(MFA, N, on_node(Part, Node)) end}
                     || Node <- Nodes]),
    {Results, Told} = await_calls(Workers, N, [], #{}),
    %% A node that captured nothing (the N came from others first) is not
    %% one that failed.
    Failed = [{Node, Why} || {Node, {error, Why}} <- Results,
                             not lists:member(Why, [stopped, timeout, no_calls_captured])],
    Kept = kept(Told, maps:from_list([{Node, Calls} || {Node, {ok, Calls}} <- Results])),
    Meta = meta(capture, io_lib:format("~p", [MFA])),
    case Kept of
        [] ->
            {error, {no_calls_captured, Failed}};
        _ ->
            case write_all([under(Node, Folded) || {Node, Folded} <- Kept], Meta, Opts, []) of
                {ok, Written} -> {ok, Written, Failed};
                {error, _} = Error -> Error
            end
    end.

-spec sample([node()] | connected, eflambe_options:opts()) ->
          {ok, binary() | file:filename(), [{node(), term()}]} | {error, term()}.
sample(Which, Opts) ->
    Nodes = nodes_of(Which),
    Part = part(Opts),
    Workers = start([{Node, fun() -> eflambe_sample:parsed(on_node(Part, Node)) end}
                     || Node <- Nodes]),
    Results = await_all(Workers, []),
    Failed = [{Node, Why} || {Node, {error, Why}} <- Results],
    case [under(Node, Folded) || {Node, {ok, Folded}} <- Results] of
        [] ->
            {error, {no_node_sampled, Failed}};
        Profiles ->
            Meta = meta(sample, io_lib:format("~b nodes at ~b Hz", [length(Profiles), maps:get(hz, Opts)])),
            case write(iolist_to_binary(Profiles), Meta, Opts) of
                {ok, Written} -> {ok, Written, Failed};
                {error, _} = Error -> Error
            end
    end.

%% This node and the others it is connected to, or those named (each once,
%% in the order given).
-spec nodes_of([node()] | connected) -> [node()].
nodes_of(connected) ->
    [node() | nodes()];
nodes_of(Nodes) ->
    lists:foldr(fun(N, Acc) -> [N | lists:delete(N, Acc)] end, [], Nodes).

%% One node's part: the same run, its folded stacks given back as data.
-spec part(eflambe_options:opts()) -> eflambe_options:opts().
part(Opts) ->
    Opts#{nodes := undefined, output_format := brendan_gregg, return := flamegraph,
          output_directory := undefined, open := undefined}.

%% One node's options: {archive, Path} becomes Path with the node's name
%% before its extension (calls.eftrace: calls.a@host.eftrace), so that
%% nodes of one machine do not write one file.
-spec on_node(eflambe_options:opts(), node()) -> eflambe_options:opts().
on_node(#{archive := Path} = Part, Node) when Path =/= undefined ->
    Named = [filename:rootname(Path), $., atom_to_list(Node), filename:extension(Path)],
    Part#{node := Node, archive := case is_binary(Path) of
                                      true -> unicode:characters_to_binary(Named);
                                      false -> lists:flatten(Named)
                                  end};
on_node(Part, Node) ->
    Part#{node := Node}.

%% A process per node runs its part and sends what it gives.
-spec start([{node(), fun(() -> term())}]) -> #{reference() => {node(), pid()}}.
start(Parts) ->
    Self = self(),
    maps:from_list([begin
                        {Pid, MRef} = spawn_monitor(fun() -> Self ! {part, self(), Run()} end),
                        {MRef, {Node, Pid}}
                    end || {Node, Run} <- Parts]).

%% Each node's result; the nodes in the order they told of their calls,
%% one entry per call, the first N.
-spec await_calls(map(), non_neg_integer(), [node()], map()) ->
          {[{node(), term()}], [node()]}.
await_calls(Workers, Left, Told, Done) when map_size(Workers) =:= 0 ->
    _ = Left,
    {maps:to_list(Done), lists:reverse(Told)};
await_calls(Workers, Left, Told, Done) ->
    receive
        {eflambe_captured, Node} when Left > 0 ->
            %% The N-th: the others stop where they are.
            _ = Left =:= 1 andalso stop_all(Workers),
            await_calls(Workers, Left - 1, [Node | Told], Done);
        {eflambe_captured, _Node} ->
            await_calls(Workers, Left, Told, Done);
        {'DOWN', MRef, process, _, _} = Down when is_map_key(MRef, Workers) ->
            {Node, Result} = ended(Down, Workers),
            await_calls(maps:remove(MRef, Workers), Left, Told, Done#{Node => Result})
    end.

-spec await_all(map(), [{node(), term()}]) -> [{node(), term()}].
await_all(Workers, Done) when map_size(Workers) =:= 0 ->
    lists:reverse(Done);
await_all(Workers, Done) ->
    receive
        {'DOWN', MRef, process, _, _} = Down when is_map_key(MRef, Workers) ->
            await_all(maps:remove(MRef, Workers), [ended(Down, Workers) | Done])
    end.

%% A part's process ended: what it sent before, or why it crashed.
-spec ended({'DOWN', reference(), process, pid(), term()}, map()) -> {node(), term()}.
ended({'DOWN', MRef, process, Pid, Reason}, Workers) ->
    {Node, Pid} = maps:get(MRef, Workers),
    receive
        {part, Pid, {ok, _} = Ok} -> {Node, Ok};
        {part, Pid, {error, _} = Error} -> {Node, Error};
        {part, Pid, Other} -> {Node, {error, Other}}
    after 0 ->
            {Node, {error, {crashed, Reason}}}
    end.

%% Ends the captures still running: each gives the calls it had.
-spec stop_all(map()) -> ok.
stop_all(Workers) ->
    _ = [case Node =:= node() of
             true -> spawn(eflambe, stop, []);
             false -> erpc:cast(Node, eflambe, stop, [])
         end || {Node, _} <- maps:values(Workers)],
    ok.

%% The calls told, in that order, each node's taken from its results in
%% turn (a node's results come in the order its calls ended).
-spec kept([node()], #{node() => [binary()]}) -> [{node(), binary()}].
kept([], _Calls) ->
    [];
kept([Node | Told], Calls) ->
    case maps:get(Node, Calls, []) of
        [Folded | Rest] -> [{Node, Folded} | kept(Told, Calls#{Node := Rest})];
        [] -> kept(Told, Calls)
    end.

%% A node's folded stacks under its name.
-spec under(node(), binary()) -> iodata().
under(Node, Folded) ->
    Name = atom_to_binary(Node),
    [[Name, $;, Line, $\n] || Line <- binary:split(Folded, <<"\n">>, [global, trim_all])].

-spec meta(atom(), iodata()) -> binary().
meta(Mode, Target) ->
    iolist_to_binary([<<"mode=">>, atom_to_binary(Mode), <<"\ntarget=">>, Target,
                      <<"\nnode=">>, atom_to_binary(node()), <<"\n">>]).

-spec write_all([iodata()], binary(), eflambe_options:opts(), list()) ->
          {ok, list()} | {error, term()}.
write_all([], _Meta, _Opts, Acc) ->
    {ok, lists:reverse(Acc)};
write_all([Profile | Rest], Meta, Opts, Acc) ->
    case write(iolist_to_binary(Profile), Meta, Opts) of
        {ok, Result} -> write_all(Rest, Meta, Opts, [Result | Acc]);
        {error, _} = Error -> Error
    end.

%% The merged stacks in the format asked for, delivered as any run's.
-spec write(binary(), binary(), eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
write(Folded, Meta, #{output_format := Format} = Opts) ->
    eflambe_output:made(fun(Out) -> eflambe_tracer:convert_folded(Folded, Format, Out#{meta => Meta}) end,
                        Opts).
