from freshet.kit.service import serve
from freshet.kit.settings import Settings
from freshet.previewer.app import create_app

settings = Settings()
serve(create_app(settings), settings)
