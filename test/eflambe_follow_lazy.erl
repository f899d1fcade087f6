%% A module eflambe_follow_SUITE unloads, so that calling it makes the code
%% server load it (a plain request to the code server, which asks
%% erl_prim_loader for the file in turn).
-module(eflambe_follow_lazy).

-export([hello/0]).

hello() ->
    hello.
