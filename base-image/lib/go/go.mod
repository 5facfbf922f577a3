module babelmr

go 1.19
