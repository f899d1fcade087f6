%% The no-op tracer NIF's stub module (bench only).
-module(eflambe_bench_noop).
-export([enabled/3, trace/5]).
-on_load(init/0).

init() ->
    erlang:load_nif(filename:join(filename:dirname(code:which(?MODULE)), "noop_tracer"), 0).

enabled(_, _, _) -> erlang:nif_error(not_loaded).
trace(_, _, _, _, _) -> erlang:nif_error(not_loaded).
