"""Running the app under Hugging Face ZeroGPU's own process model, without the platform.

`spaces` (the package a ZeroGPU Space imports) runs each `@spaces.GPU` call in a forked worker
process and talks to the platform's device API around each call. Here the device API is
`DeviceApi` (a local HTTP server that records every request) and the app is started by
`start_app.py`, which runs `spaces`' zero-mode code as it is, with one exception on a machine
without a GPU (`--cpu`): the two worker start-up steps that need CUDA.
"""
