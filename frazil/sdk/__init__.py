"""The host side of the in-function SDK: `SdkHost` serves the sdk_call frames an instance sends
(db through `frazil.data` with admin rights, http through `HttpProxy`), after checking the
invocation's credential. The in-sandbox halves are `frazil/runtimes/python/frazil_sdk` and
`frazil/runtimes/node/frazil-sdk`."""
