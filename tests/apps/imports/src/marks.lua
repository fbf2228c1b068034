return { bang = "!" }
