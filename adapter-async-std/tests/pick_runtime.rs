//! The three adapters' APIs are identical: one library source (`pick_runtime/library.rs`,
//! written against `mqtt_rt::...`) compiles and runs against each of them, which is what makes
//! a downstream `cfg(feature = "...")` re-export of the adapter enough to let its users pick
//! the runtime.

mod on_tokio {
    use mqtt_streaming_tokio as mqtt_rt;
    include!("pick_runtime/library.rs");

    #[test]
    fn library_on_tokio() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(round_trip()), ReasonCode::Success);
    }
}

mod on_smol {
    use mqtt_streaming_smol as mqtt_rt;
    include!("pick_runtime/library.rs");

    #[test]
    fn library_on_smol() {
        assert_eq!(smol::block_on(round_trip()), ReasonCode::Success);
    }
}

mod on_async_std {
    use mqtt_streaming_async_std as mqtt_rt;
    include!("pick_runtime/library.rs");

    #[test]
    fn library_on_async_std() {
        assert_eq!(async_std::task::block_on(round_trip()), ReasonCode::Success);
    }
}
