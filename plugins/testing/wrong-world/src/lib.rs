//! Test plugin: a well-formed WebAssembly component of a world that is not Tessera's.
//! The host must refuse it when it is deployed or dropped into the plugins folder.

// The export glue that wit-bindgen generates is `unsafe` (it defines the component's
// ABI entry points); it is confined to this module.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package test:elsewhere;

            world greeter {
                export greet: func(name: string) -> string;
            }
        ",
    });

    struct Greeter;

    impl Guest for Greeter {
        fn greet(name: String) -> String {
            format!("hello, {name}")
        }
    }

    export!(Greeter);
}
