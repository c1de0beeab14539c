"""The dashboard's pages, read by shell.py (st.navigation) and app.py (the page URLs it serves): plain data, so the
server can read it without running the shell."""

# (file, title, icon, url path); the home page is the default and lives at "/".
PAGES = [
    ("views/home.py", "Runs", ":material/list:", "runs"),
    ("views/train.py", "Train", ":material/model_training:", "train"),
    ("views/data.py", "Data", ":material/dataset:", "data"),
    ("views/mispredictions.py", "Mispredictions", ":material/error:", "mispredictions"),
    ("views/confusion.py", "Confusion", ":material/grid_on:", "confusion"),
    ("views/feature_maps.py", "Feature maps", ":material/layers:", "feature-maps"),
    ("views/draw.py", "Draw", ":material/draw:", "draw"),
    ("views/compare.py", "Compare", ":material/compare:", "compare"),
]

# url paths of the pages whose own live poller (views/_live.py) writes the sidebar's figures of a training run; on
# the others the sidebar mounts one of its own ("" is the home page's path)
LIVE_PAGES = {"", "runs", "train"}
