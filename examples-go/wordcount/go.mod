module babelmr.example/wordcount

go 1.19
