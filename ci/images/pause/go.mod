module github.com/dask/dask-kubernetes/ci/images/pause

go 1.26
