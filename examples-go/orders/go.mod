module babelmr.example/orders

go 1.19
