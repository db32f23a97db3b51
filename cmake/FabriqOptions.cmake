# Every build knob of fabriq, in one place.
option(FQ_TRANSPORT_ZEROMQ "Build the zeromq transport (libzmq)" ON)
option(FQ_TRANSPORT_SHMEM "Build the shmem transport (zero-copy shared memory, Linux)" ON)
option(FQ_TRANSPORT_OFI "Build the ofi transport (RDMA through libfabric)" ON)
option(FQ_TRANSPORT_NANOMSG "Build the nanomsg transport (libnanomsg; SP wire protocol)" ON)
option(FQ_DEVICE "Build libfabriq-device, its plugins and the ready-made devices" ON)
option(FQ_TOOLS "Build fq-info, fq-cat, fq-bench" ON)
option(FQ_BENCH "Build the benchmark engine and raw-library baselines" ON)
option(FQ_TESTS "Build the test suite (Criterion)" ON)
option(FQ_WERROR "Treat warnings as errors" OFF)
set(FQ_SANITIZE "" CACHE STRING "Sanitizers to build with, e.g. address,undefined")
set(FQ_BENCH_ICEORYX "AUTO" CACHE STRING
    "fq-bench --baseline iceoryx: AUTO (when iceoryx's C binding is found), ON (required), OFF")
set_property(CACHE FQ_BENCH_ICEORYX PROPERTY STRINGS AUTO ON OFF)
