module babelmr.example/tpch-q1

go 1.19
