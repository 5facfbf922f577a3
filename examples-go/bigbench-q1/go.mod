module babelmr.example/bigbench-q1

go 1.19
