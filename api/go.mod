module github.com/papochat/papo/api

go 1.26
