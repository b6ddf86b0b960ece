module github.com/lookupd/nsqlookupd

go 1.24

require (
	github.com/BurntSushi/toml v1.3.2
	github.com/julienschmidt/httprouter v1.3.0
	github.com/mreiferson/go-options v1.0.0
)
