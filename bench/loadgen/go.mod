module hearth.dev/bench/loadgen

go 1.26
