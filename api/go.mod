module github.com/papochat/papo/api

go 1.26

require github.com/gorilla/websocket v1.5.3
