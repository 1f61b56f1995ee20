"""Memory: records, the LanceDB store, embeddings, recall, injection, history and hygiene."""
